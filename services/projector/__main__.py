"""python -m services.projector: keep every SQL read model up to date from the services' aggregate states.

One process for all projections, apart from the services' own processes (their hot paths never wait for
a read model). It reads each service's state topic (the state of every write of its issues, tasks and
calls, sent by its relay: services/common/outbox.py) and writes the rows in PostgreSQL
(services/common/readside.py); it never reads the write side. Beside these projections, AuditProjection
tails the audit log (services/common/audit_readmodel.py: it reads the log by seq). The read
models' code lives with the service that owns them (services/<service>/readmodel.py); this is only where they run.

    python -m services.projector             # serve: gRPC health, metrics, one worker per projection
    python -m services.projector --rebuild   # (projector stopped) drop, recreate and refill every read model
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable

from services.alliance.readmodel import PROJECTION as ALLIANCE
from services.common import audit, mongo, readside
from services.common.audit_readmodel import AuditProjection
from services.common.grpc_server import Worker
from services.common.logs import setup_logging
from services.common.projection import Projection, ProjectionWorker, rewind, wait_caught_up
from services.common.runner import build_host
from services.common.settings import Settings, get_settings
from services.dispatch.readmodel import PROJECTION as DISPATCH
from services.evaluation.readmodel import PROJECTION as EVALUATION
from services.intake.readmodel import PROJECTION as INTAKE
from services.publication.readmodel import PROJECTION as PUBLICATION

PROJECTIONS: tuple[Projection, ...] = (INTAKE, DISPATCH, ALLIANCE, EVALUATION, PUBLICATION)


def rebuild() -> int:
    """Drop every read model, recreate the schemas, replay every state from the topics' start."""
    settings = get_settings()
    setup_logging("projector", settings.log_level)
    mongo.init("projector", settings.mongo_uri)
    readside.reset()
    readside.migrate()
    stop = threading.Event()
    threads = []
    for p in PROJECTIONS:
        print(f"[projector] {p.name}: rewound {rewind(p, settings.kafka_bootstrap)} partition(s) to the start")
        worker = ProjectionWorker(p, settings.kafka_bootstrap)
        threads.append(threading.Thread(target=worker.run, args=(stop,), name=worker.name, daemon=True))
        threads[-1].start()
    audit_rows = AuditProjection(audit.open_log(settings)).catch_up()
    print(f"[projector] audit: {audit_rows} entries projected from the log")
    ok = True
    for n, p in enumerate(PROJECTIONS, 1):
        done = wait_caught_up(p, settings.kafka_bootstrap)
        ok = ok and done
        print(f"[projector] {n}/{len(PROJECTIONS)} {p.name}: {'caught up' if done else 'NOT caught up in 600 s'}")
    stop.set()
    for t in threads:
        t.join(timeout=30)
    return 0 if ok else 1


def _given(worker: Worker) -> Callable[[Settings], Worker]:
    return lambda _settings: worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.projector", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="with the projector stopped: drop every read model, recreate its schema and replay every state",
    )
    if parser.parse_args(argv).rebuild:
        return rebuild()
    settings = get_settings()
    workers: list[Callable[[Settings], Worker]] = [
        _given(ProjectionWorker(p, settings.kafka_bootstrap, gather_ms=settings.projection_gather_ms))
        for p in PROJECTIONS
    ]
    workers.append(lambda s: AuditProjection(audit.open_log(s)))
    build_host("projector", lambda server: (), workers=workers).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
