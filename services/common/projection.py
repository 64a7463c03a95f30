"""Projections: the services' events keep the SQL read models (services/common/readside.py).

A projection reads its service's topic as its own consumer group. An event names the aggregates it is
about: its subject ("issues/<id>", "tasks/<id>", "whistles/<id>") and, for some types, others it
changed (a duplicate's original, the tasks of a call). For each poll the projection gathers them per
tenant, reads their current state from the write side by _id (one look-up per kind and tenant), and
writes each row in one transaction per tenant, only where the write side's `version` is newer than the
row's: so a projection is idempotent (an event seen twice writes nothing new), in order per aggregate
(an older state never replaces a newer one, whatever order events arrive in), and rebuildable (replaying
every event from the topic's start, `python -m services.projector --rebuild`, writes the same rows).
Offsets are committed only after the transaction; a crash redelivers, which changes nothing.

The projector runs in its own process (python -m services.projector), off the services' hot paths:
a whistle is blown by dispatch's consumer whatever the projections are doing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Histogram
from sqlalchemy import Connection

from services.common import context, mongo, readside
from services.common.consumer import gathered_polls, subscribe_known
from services.common.events import CloudEvent, PoisonEvent
from services.common.principal import Principal

log = logging.getLogger(__name__)

PROJECTION_LAG = Histogram(
    "hongling_projection_lag_seconds",
    "From an event's time to its read-model rows being committed.",
    ["projection"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PROJECTION_DELAY = Histogram(
    "hongling_projection_delay_seconds",
    "From an event's arrival on Kafka (its record's timestamp) to its read-model rows being committed: the "
    "projector's own share of the lag (the rest is the writer's relay).",
    ["projection"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PROJECTED = Counter(
    "hongling_projection_events_total",
    "Events a projection handled, by outcome (projected, skipped: a type it does not read, poison).",
    ["projection", "outcome"],
)
ROWS_WRITTEN = Counter("hongling_projection_rows_total", "Read-model rows a projection wrote.", ["projection"])
FAILURES = Counter("hongling_projection_failures_total", "Transactions that failed and were retried.", ["projection"])

# (kind, id): an aggregate whose row to bring up to date; the kind is its subject's collection ("issues").
Ref = tuple[str, str]
# A refresh writes the rows of these aggregates (of one kind, in the call's tenant) from the write side,
# inside the given read-side transaction; returns the number of rows it changed.
Refresh = Callable[[Connection, list[str]], int]


def current(service: str, collection: str, ids: list[str]) -> dict[str, Mapping[str, Any]]:
    """The aggregates of these ids as `service`'s write side holds them now (call tenant), by _id, without
    their outbox: what a refresh writes rows from."""
    found = mongo.service_collection(service, collection).find({"_id": {"$in": ids}}, {"outbox": 0})
    return {d["_id"]: d for d in found}


def subject_ref(subject: str) -> Ref | None:
    kind, _, ident = subject.partition("/")
    return (kind, ident) if kind and ident else None


@dataclass(frozen=True)
class Projection:
    name: str  # e.g. "intake" (its consumer group: projector-<name>)
    topics: Sequence[str]
    refresh: Mapping[str, Refresh]  # kind -> refresh
    # Aggregates an event changed beside its subject, by event type (payload decoded with that class).
    also: Mapping[type[Message], Callable[[Any], Iterable[Ref]]] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return f"projector-{self.name}"

    def refs(self, event: CloudEvent) -> list[Ref]:
        """The aggregates this event is about (none: an event this projection does not read)."""
        found: list[Ref] = []
        ref = subject_ref(event.subject)
        if ref is not None and ref[0] in self.refresh:
            found.append(ref)
        for cls, extra in self.also.items():
            if event.type == cls.DESCRIPTOR.full_name:
                found.extend(r for r in extra(event.decode(cls)) if r[0] in self.refresh and r[1])
        return found

    def apply(self, tenant: str, refs: Iterable[Ref]) -> int:
        """Bring these aggregates' rows up to date in one transaction of the tenant; rows changed."""
        by_kind: dict[str, list[str]] = {}
        for kind, ident in refs:
            ids = by_kind.setdefault(kind, [])
            if ident not in ids:
                ids.append(ident)
        written = 0
        with context.bound(tenant=tenant, principal=PRINCIPAL), readside.begin(tenant) as conn:
            for kind, ids in by_kind.items():
                written += self.refresh[kind](conn, ids)
        return written


PRINCIPAL = Principal(sub="service:projector", role="service", tenants=("*",))


class ProjectionWorker:
    """Runs one projection: poll, gather per tenant, one transaction per tenant, then commit offsets."""

    def __init__(self, projection: Projection, bootstrap: str, *, max_records: int = 500, gather_ms: int = 250) -> None:
        self.projection = projection
        self.name = f"{projection.group}-worker"
        self.bootstrap = bootstrap
        self.max_records = max_records
        self.retry_seconds = 0.5
        # While events keep coming, poll at most this often, so that a poll brings many: the events of one
        # issue (received, classified, its status) become one fetch and one row write, and each poll,
        # fetch and transaction is paid for a batch (figures: HONGLING_PROJECTION_GATHER_MS in settings.py).
        self.gather = max(0, gather_ms) / 1000

    def consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.projection.group,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
            max_poll_records=self.max_records,
            max_poll_interval_ms=300000,
        )

    def run(self, stop: threading.Event) -> None:
        consumer = self.consumer()
        subscribe_known(consumer, self.projection.topics, stop)
        log.info("projection %s reads %s", self.projection.name, ", ".join(self.projection.topics))
        try:
            for batches in gathered_polls(consumer, stop, self.gather):
                if not batches:
                    continue
                offsets = {
                    tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in batches.items() if records
                }
                records = [r for tp in sorted(batches, key=lambda t: (t.topic, t.partition)) for r in batches[tp]]
                while not stop.is_set():
                    try:
                        self.project(records)
                        break
                    except Exception as exc:  # the read side or the write side is away: the same records again
                        FAILURES.labels(self.projection.name).inc()
                        log.warning("projection %s failed, retrying: %s", self.projection.name, exc)
                        stop.wait(self.retry_seconds)
                else:
                    break  # stopping: nothing committed, the records come again
                consumer.commit(offsets)
        finally:
            consumer.close(autocommit=False)

    def project(self, records: Sequence[Any]) -> int:
        """One poll's records: their aggregates' rows written per tenant; returns rows changed."""
        name = self.projection.name
        per_tenant: dict[str, list[Ref]] = {}
        times: list[datetime] = []
        arrived: list[float] = []
        for record in records:
            try:
                event = CloudEvent.from_record(record.headers, record.value)
                refs = self.projection.refs(event)
            except PoisonEvent as exc:
                PROJECTED.labels(name, "poison").inc()
                log.warning("projection %s skips a record it cannot read (offset %s): %s", name, record.offset, exc)
                continue
            if not refs:
                PROJECTED.labels(name, "skipped").inc()
                continue
            per_tenant.setdefault(event.tenant, []).extend(refs)
            times.append(event.time)
            if isinstance(record.timestamp, int) and record.timestamp > 0:
                arrived.append(record.timestamp / 1000)
        written = 0
        for tenant, refs in per_tenant.items():
            written += self.projection.apply(tenant, refs)
        now = datetime.now(UTC)
        for at in times:
            PROJECTION_LAG.labels(name).observe(max(0.0, (now - at).total_seconds()))
        for t in arrived:
            PROJECTION_DELAY.labels(name).observe(max(0.0, now.timestamp() - t))
        PROJECTED.labels(name, "projected").inc(len(times))
        ROWS_WRITTEN.labels(name).inc(written)
        return written


def _partitions(consumer: KafkaConsumer, projection: Projection) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in projection.topics for p in sorted(consumer.partitions_for_topic(t) or ())]


def rewind(projection: Projection, bootstrap: str) -> int:
    """Move the projection's consumer group to the start of its topics (its process must be stopped), so
    that it projects every event again; returns the partitions rewound."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=projection.group, enable_auto_commit=False)
    try:
        parts = _partitions(consumer, projection)
        if not parts:
            return 0
        starts = consumer.beginning_offsets(parts)
        consumer.assign(parts)
        consumer.commit({tp: OffsetAndMetadata(starts[tp], "", -1) for tp in parts})
        return len(parts)
    finally:
        consumer.close(autocommit=False)


def wait_caught_up(projection: Projection, bootstrap: str, deadline_seconds: float = 600.0) -> bool:
    """True once the projection's group has committed the end of every partition (rebuilds, benchmarks)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=projection.group, enable_auto_commit=False)
    try:
        parts = _partitions(consumer, projection)
        ends = consumer.end_offsets(parts)
        until = time.monotonic() + deadline_seconds
        while time.monotonic() < until:
            if all((consumer.committed(tp) or 0) >= ends[tp] for tp in parts):
                return True
            time.sleep(0.2)
        return False
    finally:
        consumer.close(autocommit=False)
