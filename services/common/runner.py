"""The composition root shared by every service's __main__: settings, logs, storage, workers, server."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import grpc

from services.common import mongo
from services.common.grpc_server import ServiceHost, Worker
from services.common.logs import setup_logging
from services.common.outbox import OutboxDocument, OutboxRelay
from services.common.settings import Settings, get_settings


def build_host(
    name: str,
    register: Callable[[grpc.Server], Sequence[str]],
    *,
    outbox_documents: Sequence[type[OutboxDocument]] = (),
    workers: Iterable[Callable[[Settings], Worker]] = (),
    tenantless: Iterable[str] = (),
    settings: Settings | None = None,
) -> ServiceHost:
    settings = settings or get_settings()
    setup_logging(name, settings.log_level)
    mongo.init(name, settings.mongo_uri)
    running: list[Worker] = []
    if outbox_documents:
        running.append(
            OutboxRelay(name, outbox_documents, settings.kafka_bootstrap, interval=settings.relay_interval_seconds)
        )
    running.extend(factory(settings) for factory in workers)
    return ServiceHost(name, settings, register, workers=running, tenantless=tenantless)


def run_service(
    name: str,
    register: Callable[[grpc.Server], Sequence[str]],
    **kwargs: object,
) -> None:
    """Build the service and serve until SIGTERM."""
    build_host(name, register, **kwargs).serve_forever()  # type: ignore[arg-type]
