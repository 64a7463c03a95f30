"""Projections: the services' aggregate states keep the SQL read models (services/common/readside.py).

A service's relay sends the state of every write of an issue, a task or a call to the service's
compacted state topic (services/common/outbox.py, "State"). A projection reads those topics as its own
consumer group; for each poll it keeps the newest state per aggregate, and writes the rows in one
transaction per tenant, only where the state's `version` is newer than the row's: so a projection is
idempotent (a record seen twice writes nothing new), in order per aggregate (an older state never
replaces a newer one, whatever order records arrive in), and rebuildable (compaction keeps every
aggregate's newest state; `python -m services.projector --rebuild` replays the topics from their start
and writes the same rows). Offsets are committed only after the transaction; a crash redelivers, which
changes nothing. The projector never reads the write side.

The projector runs in its own process (python -m services.projector), off the services' hot paths:
a whistle is blown by dispatch's consumer whatever the projections are doing. Measured (issue 15): when
rows were made by reading each aggregate back from the write side, those FerretDB look-ups competed with
the whistle's own on the 2-core machine (event → WhistleBlown p99 187–202 ms without the projector, 363–526
ms with it); figures with state records in the issue's closing note.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bson
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Histogram
from sqlalchemy import Connection

from services.common import context, readside
from services.common.consumer import (
    FETCH_MAX_WAIT_MS,
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    gathered_polls,
    member_client_id,
    subscribe_known,
)
from services.common.principal import Principal

log = logging.getLogger(__name__)

PROJECTION_LAG = Histogram(
    "hongling_projection_lag_seconds",
    "From a write of an aggregate (its updated_at, else its created_at) to its read-model rows being committed.",
    ["projection"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PROJECTION_DELAY = Histogram(
    "hongling_projection_delay_seconds",
    "From a state's arrival on Kafka (its record's timestamp) to its read-model rows being committed: the "
    "projector's own share of the lag (the rest is the writer's relay).",
    ["projection"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PROJECTED = Counter(
    "hongling_projection_states_total",
    "State records a projection handled, by outcome (projected; skipped: a collection it does not keep; poison).",
    ["projection", "outcome"],
)
ROWS_WRITTEN = Counter("hongling_projection_rows_total", "Read-model rows a projection wrote.", ["projection"])
FAILURES = Counter("hongling_projection_failures_total", "Transactions that failed and were retried.", ["projection"])


@dataclass(frozen=True)
class State:
    """An aggregate's state as its relay sent it: the document (without its outbox) and its BSON."""

    raw: dict[str, Any]
    body: bytes

    @property
    def version(self) -> int:
        return int(self.raw.get("version") or 1)


# A refresh writes the rows of these aggregates (of one kind, in the call's tenant; id -> newest state of
# this poll), inside the given read-side transaction, where newer than the rows; returns rows changed.
Refresh = Callable[[Connection, Mapping[str, State]], int]


class PoisonState(Exception):
    """A state record that can never be projected (no tenant, no collection, not BSON)."""


def decode_state(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> tuple[str, str, State]:
    """(tenant, collection, state) of a state topic's record."""
    found = {k: v for k, v in headers or ()}
    try:
        tenant, collection = found["tenant"].decode(), found["collection"].decode()
        raw = bson.decode(value or b"", codec_options=readside.BODY_CODEC)
        if "_id" not in raw:
            raise KeyError("_id")  # a state without an _id is no aggregate
    except (KeyError, UnicodeDecodeError, bson.errors.BSONError) as exc:
        raise PoisonState(f"not a state record: {exc!r}") from None
    return tenant, collection, State(raw, bytes(value or b""))


def written_at(raw: Mapping[str, Any]) -> datetime | None:
    at = raw.get("updated_at") or raw.get("created_at")
    return readside.utc(at) if isinstance(at, datetime) else None


@dataclass(frozen=True)
class Projection:
    name: str  # e.g. "intake" (its consumer group: projector-<name>)
    topics: Sequence[str]  # state topics (events.state_topic_for)
    refresh: Mapping[str, Refresh]  # collection -> refresh

    @property
    def group(self) -> str:
        return f"projector-{self.name}"

    def apply(self, tenant: str, states: Mapping[str, Mapping[str, State]]) -> int:
        """Bring these aggregates' rows (collection -> id -> state) up to date in one transaction of the
        tenant; rows changed."""
        written = 0
        with context.bound(tenant=tenant, principal=PRINCIPAL), readside.begin(tenant) as conn:
            for collection, found in states.items():
                written += self.refresh[collection](conn, found)
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
            client_id=member_client_id(self.name),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_records=self.max_records,
            max_poll_interval_ms=300000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # idle cost (services/common/consumer.py)
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
        """One poll's records: the newest state of each aggregate, its row written per tenant; returns rows
        changed."""
        name = self.projection.name
        per_tenant: dict[str, dict[str, dict[str, State]]] = {}
        times: list[datetime] = []
        arrived: list[float] = []
        projected = 0
        for record in records:
            try:
                tenant, collection, state = decode_state(record.headers, record.value)
            except PoisonState as exc:
                PROJECTED.labels(name, "poison").inc()
                log.warning("projection %s skips a record it cannot read (offset %s): %s", name, record.offset, exc)
                continue
            if collection not in self.projection.refresh:
                PROJECTED.labels(name, "skipped").inc()
                continue
            projected += 1
            found = per_tenant.setdefault(tenant, {}).setdefault(collection, {})
            ident = str(state.raw["_id"])
            if ident not in found or found[ident].version < state.version:
                found[ident] = state
            sent = record.timestamp / 1000 if isinstance(record.timestamp, int) and record.timestamp > 0 else None
            if sent is not None:
                arrived.append(sent)
            at = written_at(state.raw)
            if at is None and sent is not None:
                at = datetime.fromtimestamp(sent, UTC)  # a state without its write's time (a new call): when sent
            if at is not None:
                times.append(at)
        written = 0
        for tenant, states in per_tenant.items():
            written += self.projection.apply(tenant, states)
        now = datetime.now(UTC)
        for at in times:
            PROJECTION_LAG.labels(name).observe(max(0.0, (now - at).total_seconds()))
        for t in arrived:
            PROJECTION_DELAY.labels(name).observe(max(0.0, now.timestamp() - t))
        PROJECTED.labels(name, "projected").inc(projected)
        ROWS_WRITTEN.labels(name).inc(written)
        return written


def _partitions(consumer: KafkaConsumer, projection: Projection) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in projection.topics for p in sorted(consumer.partitions_for_topic(t) or ())]


def rewind(projection: Projection, bootstrap: str) -> int:
    """Move the projection's consumer group to the start of its topics (its process must be stopped), so
    that it projects every state again; returns the partitions rewound."""
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
