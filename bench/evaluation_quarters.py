"""A year of verified and rated tasks fed through the events; then the measures' and boards' reads.

Runs against a running stack (deploy/local/test.sh bench starts a private one).

The load (issue 18): 100,000 tasks across the 7 tenants (3 communities each, 40 member units — a quarter of
them property companies, a quarter social organisations — and 200 people each, half party members, half
volunteers) and the 4 quarters of 2026, each task as the services produce its events on Kafka: a WhistleBlown
to two targets (a unit and a person), their UnitReportedIn (a tenth late), a verdict (TaskVerified at the first
attempt, or TaskVerificationFailed then TaskVerified at the second: 15 %), an IssueRated (1-5) on its crew; plus
org's UnitJoined/PersonRegistered for everyone. About 6.2 events a task. Nothing is written to a table by the
benchmark: the consumer group evaluation-measures builds everything, and the boards' timers freeze the closed
quarters (and correct them while their events still arrive) as in use.

Printed:
- incremental: events/s of the consumer catching up: the events are sent while the evaluation service is
  stopped, then it is started and timed until its group has committed the end (goal ≥ 1,000);
- a past quarter's board (2026Q2, frozen): p50/p99 of a board's first page, tenant-wide and of a community,
  through gRPC (GetBoards) and the gateway (GET …/evaluation/boards) (goal p99 < 50 ms);
- a unit's measures for a quarter: p50/p99 through gRPC (GetMeasures) and the gateway (goal p99 < 50 ms);
- a quarter's rebuild (RebuildQuarter 2026Q3 in every tenant: its counters recomputed from the fact rows and
  compared): seconds, the sum over the tenants (goal < 60 s), and the counters that differed (0 expected).

    HONGLING_TEST_PORT_BASE=29500 bash deploy/local/test.sh bench bench/evaluation_quarters.py
    HONGLING_BENCH_EVALUATION_SCALE=0.05 (a twentieth: 5,000 tasks), HONGLING_BENCH_EVALUATION_REPS=300
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import requests
from benchlib import admin_headers, percentile, settle
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.evaluation.v1 import evaluation_pb2 as pb
from hongling.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.events.v1 import org_events_pb2 as oev
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from services.common.events import CloudEvent, record_key, topic_for
from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from services.common.settings import get_settings
from services.common.tenants import tenant_slugs
from services.evaluation.measures.consumer import GROUP, TOPICS

SCALE = float(os.environ.get("HONGLING_BENCH_EVALUATION_SCALE", "1"))
REPS = int(os.environ.get("HONGLING_BENCH_EVALUATION_REPS", "300"))
TASKS = int(100_000 * SCALE)
COMMUNITIES, UNITS, PEOPLE = 3, 40, 200
UNIT_KINDS = ("property_company", "new_economy_social_org", "owners_committee", "resident_unit")
settings = get_settings()
TENANTS = list(tenant_slugs())
GATEWAY = f"http://127.0.0.1:{settings.gateway_port}"
RUN = uuid.uuid4().hex[:6]
rng = random.Random(18)
stub = pb_grpc.EvaluationServiceStub(grpc.insecure_channel(settings.address("evaluation")))
http = admin_headers(settings)


def md(tenant: str, role: str = "subdistrict_admin") -> list[tuple[str, str]]:
    who = Principal(sub="bench:evaluation", role=role, tenants=(tenant,))
    return [(METADATA_KEY, mint(who, settings.principal_secret, ttl_seconds=600)), (TENANT_KEY, tenant)]


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


class Sender:
    def __init__(self) -> None:
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20, batch_size=262144
        )
        self.sent = 0

    def __call__(self, tenant: str, service: str, key: str, msg: Message, at: datetime) -> None:
        ce = CloudEvent(
            uuid.uuid4().hex,
            f"/hongling/{service}/{tenant}",
            msg.DESCRIPTOR.full_name,
            at,
            key,
            tenant,
            msg.SerializeToString(),
        )
        self.producer.send(topic_for(service), key=record_key(tenant, key), value=ce.data, headers=ce.headers())
        self.sent += 1


def community(tenant: str, c: int) -> str:
    return f"bench-eval-{RUN}-{c}"


def unit(c: int, u: int) -> str:
    return f"beu-{RUN}-{c}-{u}"


def person(c: int, p: int) -> str:
    return f"bep-{RUN}-{c}-{p}"


def quarter_time(q: int) -> datetime:
    """A random time in 2026's quarter q (Q4: before now)."""
    start = datetime(2026, 3 * q - 2, 1, tzinfo=UTC)
    end = min(
        datetime(2026 + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(days=2)
    )
    return start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))


def load(send: Sender) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for tenant in TENANTS:
        for c in range(COMMUNITIES):
            cid = community(tenant, c)
            for u in range(UNITS):
                send(
                    tenant,
                    "org",
                    unit(c, u),
                    oev.UnitJoined(
                        unit_id=unit(c, u),
                        community_id=cid,
                        name_zh=f"成员单位{c}-{u}",
                        kind=UNIT_KINDS[u % 4],
                        version=1,
                    ),
                    at,
                )
            for p in range(PEOPLE):
                roles = ["party_member"] if p % 2 == 0 else ["volunteer"]
                send(
                    tenant,
                    "org",
                    person(c, p),
                    oev.PersonRegistered(person_id=person(c, p), community_id=cid, roles=roles, version=1),
                    at,
                )
    send.producer.flush()
    for i in range(TASKS):
        tenant = TENANTS[i % len(TENANTS)]
        c = rng.randrange(COMMUNITIES)
        cid = community(tenant, c)
        q = 1 + (i // len(TENANTS)) % 4
        blown = quarter_time(q)
        u, p = unit(c, rng.randrange(UNITS)), person(c, rng.randrange(PEOPLE))
        w, task = f"bw-{RUN}-{i}", f"bt-{RUN}-{i}"
        send(
            tenant,
            "dispatch",
            w,
            dev.WhistleBlown(
                whistle_id=w,
                tenant=tenant,
                community_id=cid,
                call_type="service",
                target_kinds=["member_unit", "person"],
                target_ids=[u, p],
                task_ids=[task],
                blown_at=ts(blown),
            ),
            blown,
        )
        for kind, ident in (("member_unit", u), ("person", p)):
            send(
                tenant,
                "dispatch",
                w,
                dev.UnitReportedIn(
                    whistle_id=w,
                    tenant=tenant,
                    responder_kind=kind,
                    responder_id=ident,
                    answer="accept",
                    late=rng.random() < 0.1,
                    reported_at=ts(blown + timedelta(minutes=20)),
                ),
                blown,
            )
        crew = [f"member_unit:{u}", f"person:{p}"]
        done = blown + timedelta(days=1)
        if rng.random() < 0.15:
            send(
                tenant,
                "evaluation",
                task,
                eev.TaskVerificationFailed(
                    verification_id=f"{task}-1",
                    tenant=tenant,
                    community_id=cid,
                    task_id=task,
                    call_type="service",
                    method="review",
                    attempt=1,
                    crew_ids=crew,
                    failed_at=ts(done),
                ),
                done,
            )
            send(
                tenant,
                "evaluation",
                task,
                eev.TaskVerified(
                    verification_id=f"{task}-2",
                    tenant=tenant,
                    community_id=cid,
                    task_id=task,
                    call_type="service",
                    method="review",
                    attempt=2,
                    crew_ids=crew,
                    verified_at=ts(done + timedelta(hours=6)),
                ),
                done,
            )
        else:
            send(
                tenant,
                "evaluation",
                task,
                eev.TaskVerified(
                    verification_id=f"{task}-1",
                    tenant=tenant,
                    community_id=cid,
                    task_id=task,
                    call_type="service",
                    method="review",
                    attempt=1,
                    crew_ids=crew,
                    verified_at=ts(done),
                ),
                done,
            )
        send(
            tenant,
            "evaluation",
            task,
            eev.IssueRated(
                issue_id=f"bi-{RUN}-{i}",
                tenant=tenant,
                community_id=cid,
                score=rng.choice((5, 5, 4, 4, 4, 3, 2)),
                crew_ids=crew,
                rating_id=f"br-{RUN}-{i}",
                rated_at=ts(done + timedelta(days=1)),
            ),
            done,
        )
    send.producer.flush()


def caught_up(ends: dict[TopicPartition, int]) -> bool:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=GROUP, enable_auto_commit=False)
    try:
        return all((consumer.committed(tp) or 0) >= n for tp, n in ends.items())
    finally:
        consumer.close(autocommit=False)


def end_offsets() -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [TopicPartition(t, p) for t in TOPICS for p in sorted(consumer.partitions_for_topic(t) or ())]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close()


def timed(fn: Callable[[], object]) -> list[float]:
    for _ in range(10):  # warm up: connections, caches
        fn()
    out = []
    for _ in range(REPS):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def report(name: str, ms: list[float]) -> float:
    p99 = percentile(ms, 99)
    print(f"[evaluation]   {name:<44} p50 {percentile(ms, 50):6.1f} ms  p99 {p99:6.1f} ms", flush=True)
    return p99


def services(*args: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["bash", os.path.join(here, "..", "deploy", "local", "services.sh"), *args], check=True)


def main() -> int:
    send = Sender()
    before = end_offsets()
    # The events wait on Kafka while the evaluation service is stopped, then its consumer catches up alone: the
    # rate is the consumer's, not shared with this process's producing on the same two cores.
    services("stop", "evaluation")
    t0 = time.monotonic()
    load(send)
    sent_at = time.monotonic() - t0
    ends = end_offsets()
    events = sum(ends[tp] - before.get(tp, 0) for tp in ends)
    print(f"[evaluation] {TASKS:,} tasks: {events:,} events sent in {sent_at:.0f} s (evaluation stopped)", flush=True)
    t0 = time.monotonic()
    services("start", "evaluation")
    while not caught_up(ends):
        time.sleep(0.5)
    took = time.monotonic() - t0
    rate = events / took
    print(
        f"[evaluation] incremental: {events:,} events applied in {took:.0f} s from the service's start"
        f" = {rate:,.0f} events/s (goal ≥ 1,000)",
        flush=True,
    )

    # The boards' timers freeze the closed quarters and correct them (30 s after the last late event): the
    # reads are measured once they are done and the stack is quiet.
    waited = settle(limit_s=300)
    print(f"[evaluation] the stack settled {waited:.0f} s after the last event was applied", flush=True)
    tenant = TENANTS[0]
    cid = community(tenant, 0)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        found = stub.GetBoards(
            pb.GetBoardsRequest(quarter="2026Q2", community_id=cid, board="red_property"), metadata=md(tenant)
        )
        if found.status == "frozen" and found.boards and found.boards[0].entries:
            break
        time.sleep(1)
    print(
        f"[evaluation] 2026Q2 of {tenant}/{cid}: {found.status}, version {found.version}, "
        f"{len(found.boards[0].entries)} entrants on its first page",
        flush=True,
    )
    subject = f"member_unit:{unit(0, 0)}"
    p99s = [
        report(
            "board, tenant (gRPC GetBoards)",
            timed(
                lambda: stub.GetBoards(
                    pb.GetBoardsRequest(quarter="2026Q2", board="volunteer", page_size=20), metadata=md(tenant)
                )
            ),
        ),
        report(
            "board, community (gRPC GetBoards)",
            timed(
                lambda: stub.GetBoards(
                    pb.GetBoardsRequest(quarter="2026Q2", community_id=cid, page_size=20), metadata=md(tenant)
                )
            ),
        ),
        report(
            "board, community (GET …/evaluation/boards)",
            timed(
                lambda: requests.get(
                    f"{GATEWAY}/api/v1/tenants/{tenant}/evaluation/boards",
                    params={"quarter": "2026Q2", "community_id": cid, "page_size": 20},
                    headers=http,
                    timeout=10,
                ).raise_for_status()
            ),
        ),
        report(
            "a unit's measures (gRPC GetMeasures)",
            timed(
                lambda: stub.GetMeasures(pb.GetMeasuresRequest(subject=subject, period="2026Q3"), metadata=md(tenant))
            ),
        ),
        report(
            "a unit's measures (GET …/evaluation/measures)",
            timed(
                lambda: requests.get(
                    f"{GATEWAY}/api/v1/tenants/{tenant}/evaluation/measures",
                    params={"subject": subject, "period": "2026Q3"},
                    headers=http,
                    timeout=10,
                ).raise_for_status()
            ),
        ),
    ]
    provisional = timed(
        lambda: stub.GetBoards(
            pb.GetBoardsRequest(quarter="2026Q4", community_id=cid, page_size=20), metadata=md(tenant)
        )
    )
    report("current quarter's provisional board (gRPC)", provisional)

    total = 0.0
    differing = 0
    for t in TENANTS:
        r = stub.RebuildQuarter(pb.RebuildQuarterRequest(quarter="2026Q3"), metadata=md(t, "ops"), timeout=600)
        total += r.seconds
        differing += r.differing
        print(
            f"[evaluation]   rebuild 2026Q3 {t:<12} {r.fact_rows:>8,} fact rows, {r.counters:>8,} counters, "
            f"{r.differing} differing, {r.seconds:.2f} s",
            flush=True,
        )
    print(
        f"[evaluation] a quarter's rebuild, all tenants: {total:.1f} s (goal < 60 s), {differing} counters differing",
        flush=True,
    )
    ok = rate >= 1000 and all(p < 50 for p in p99s) and total < 60 and differing == 0
    print(f"[evaluation] goals {'met' if ok else 'MISSED'}", flush=True)
    send.producer.close(timeout=10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
