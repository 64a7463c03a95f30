"""Kafka consumer loop: at-least-once delivery made effectively-once by the handlers' own writes.

- Offsets are committed manually, only after the handler's write (and the processed-event mark).
- A record whose event id was already handled is dropped (ProcessedEvent, per tenant database).
  Handlers are also written idempotently by natural key, so a crash between the handler's write
  and the mark changes nothing on redelivery.
- Types whose handlers are idempotent by themselves (listed in `idempotent`: every write is an insert
  by a deterministic _id or a change that a second run finds done) skip the mark: its read and its
  insert are two database commands per event that a replay would not need.
- A record that cannot be parsed goes straight to the dead-letter topic; one whose handler keeps
  failing goes there after bounded retries. Either way the consumer moves on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, ClassVar

import mongoengine as me
import pymongo.errors
from google.protobuf.message import Message
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from services.common import context, dependencies, metrics
from services.common.events import CloudEvent, PoisonEvent, dead_letter_topic
from services.common.mongo import TenantDocument
from services.common.outbox import make_producer
from services.common.principal import Principal

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, Any], None]
LAG_REPORT_SECONDS = 2.0
# Idle cost. A consumer at rest still polls: each poll wakes its kafka-python IO thread, each fetch that comes
# back empty is a round trip through the broker, and each heartbeat another. With a 200 ms poll, the default
# 500 ms fetch wait and 1.5 s heartbeats the stack's 15 consumers kept about 10 % of a core busy doing nothing
# (issue 20). Neither wait delays a record: the broker answers a waiting fetch as soon as a record arrives
# (fetch_min_bytes 1), and a poll returns as soon as a fetch brings records. The poll's wait bounds how soon a
# consumer notices `stop` (a shutdown waits up to that long); the fetch's how soon partitions newly assigned by a
# rebalance are first fetched (the one broker's connection has a fetch in flight). Heartbeats and commits go over
# the group coordinator's own connection, not behind the fetch. Figures (8 idle consumers on one broker, the
# consumers' process / the broker, % of a core): poll 1 s, heartbeat 1.5 s, fetch wait 5 s: 1.56 / 1.85;
# poll 5 s, heartbeat 3 s, fetch wait 30 s: 0.51 / 1.85. The fetch wait stays 5 s: at 15 s, partitions new after a
# rebalance went unfetched long enough for dispatch to blow a call before it heard of a new member unit (its
# directory's invalidation event). The whole stack at rest: bench/idle_cost.py.
POLL_TIMEOUT_MS = 5000
# A dead-letter topic that could not be measured (metadata not here yet, the broker away) is asked again after
# this many seconds, not after the full report interval: a process just started shows its figure promptly.
DLQ_RETRY_SECONDS = 5.0
FETCH_MAX_WAIT_MS = 5000
# A member whose process died is dropped by the broker after SESSION_TIMEOUT_MS without a heartbeat; its
# partitions go to the others then (docs/runbook.md, "Scaling out"). Kafka's default heartbeat, 3 s.
SESSION_TIMEOUT_MS = 10000
HEARTBEAT_INTERVAL_MS = 3000


def member_client_id(name: str) -> str:
    """The Kafka client id of this process's consumer `name`: the name, the host and the process id. Several
    processes of a service share its groups (docs/runbook.md, "Scaling out"); with this a group's description
    (kafka-consumer-groups.sh --describe --members, AdminClient.describe_groups) says which process holds which
    partitions (on a machine: the pid; in Kubernetes, where every pid is 1: the pod's name)."""
    return f"{name}-{socket.gethostname()}-{os.getpid()}"


def subscribe_known(
    consumer: KafkaConsumer, topics: Sequence[str], stop: threading.Event, timeout: float = 30.0
) -> None:
    """Subscribe once the cluster's metadata names every topic's partitions: a member that joins its group
    before it knows them is assigned nothing ("No partition metadata for topic …") and, the group being
    stable, stays idle. Waits at most `timeout` (a topic still unknown then is subscribed to anyway)."""
    until = time.monotonic() + timeout
    for topic in topics:
        while not consumer.partitions_for_topic(topic) and time.monotonic() < until and not stop.is_set():
            stop.wait(0.2)
    consumer.subscribe(list(topics))


def gathered_polls(consumer: KafkaConsumer, stop: threading.Event, gather: float) -> Iterator[Any]:
    """The consumer's polls (each may be empty) until `stop`. While records keep coming (the last poll brought
    some), the next poll waits until `gather` seconds have passed since the last one began, so that one poll
    brings several (0, or a poll that brought none: at once)."""
    polled = 0.0  # when the last poll that brought records began (0: the last brought none)
    while not stop.is_set():
        if gather and polled:
            wait = polled + gather - time.monotonic()
            if wait > 0:
                stop.wait(wait)
        polled = time.monotonic()
        batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        if not batches:
            polled = 0.0
        yield batches


class ProcessedEvent(TenantDocument):
    """Ids of events this service has handled (per tenant database)."""

    meta: ClassVar[dict[str, Any]] = {"collection": "processed_events"}

    id = me.StringField(primary_key=True)
    group = me.StringField(required=True)
    type = me.StringField(required=True)
    handled_at = me.DateTimeField(required=True)


class EventConsumer:
    def __init__(
        self,
        group: str,
        topics: Sequence[str],
        handlers: Mapping[type[Message], Handler],
        bootstrap: str,
        *,
        max_retries: int = 3,
        retry_backoff: float = 0.2,
        mark_prefix: str = "",
        concurrency: int = 1,
        wants: Callable[[CloudEvent], bool] | None = None,
        idempotent: Sequence[type[Message]] = (),
        gather_ms: int = 0,
    ) -> None:
        self.name = f"{group}-consumer"
        self.group = group
        self.topics = list(topics)
        self.handlers = {cls.DESCRIPTOR.full_name: (cls, fn) for cls, fn in handlers.items()}
        self.bootstrap = bootstrap
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.dlq_topic = dead_letter_topic(group)
        self.principal = Principal(sub=f"service:{group}", role="service", tenants=("*",))
        # Processed-event marks share the service's database: a second group of a service that reads the
        # same topics keeps its own marks under this prefix (the main group's marks are the bare event ids).
        self.mark_prefix = mark_prefix
        # Records with different keys (different aggregates) handled at once by this many threads; the
        # records of one key always one after another, in their order (see _handle_concurrently).
        self.concurrency = max(1, concurrency)
        # Asked in the event's tenant before anything is read or written: False skips the event as one of a
        # type without a handler (no processed mark), e.g. an event nobody subscribed to.
        self.wants = wants
        self._lag_reported = 0.0
        # Types handled without the processed-event mark (see the module docstring).
        self.idempotent = frozenset(cls.DESCRIPTOR.full_name for cls in idempotent)
        unknown = self.idempotent - set(self.handlers)
        if unknown:
            raise ValueError(f"idempotent types without a handler: {', '.join(sorted(unknown))}")
        # While records keep coming, poll at most once per this many ms (0: at once). A kafka-python poll costs
        # about as much CPU as handling a small record, and at tens of records a second a consumer that polls
        # at once fetches them one by one. Gathering for 50 ms took intake's lifecycle consumer from 3-4.5 to
        # 2.3 ms of CPU per issue in bench/dispatch_pipeline.py. A record then waits up to twice this long, so
        # only consumers off the latency-critical path use it.
        self.gather = max(0, gather_ms) / 1000
        self._commit_failed: set[TopicPartition] = set()  # partitions whose last commit failed (consumer thread)

    def run(self, stop: threading.Event) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=member_client_id(self.name),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_records=100,
            max_poll_interval_ms=300000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        subscribe_known(consumer, self.topics, stop)
        dlq = make_producer(self.bootstrap, f"{self.name}-dlq")
        pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.name}-handler")
            if self.concurrency > 1
            else None
        )
        log.info("consumer %s subscribed to %s", self.group, ", ".join(self.topics))
        try:
            for batches in gathered_polls(consumer, stop, self.gather):
                if not batches:
                    self._retry_commits(consumer)
                if pool is not None and sum(len(r) for r in batches.values()) > 1:
                    # All or nothing: a failure leaves the whole poll to be redelivered (marks skip what
                    # was handled of it).
                    self._commit(consumer, self._handle_concurrently(batches, dlq, pool))
                    self._report_lag(consumer)
                    continue
                done: dict[TopicPartition, OffsetAndMetadata] = {}
                try:
                    for tp, records in batches.items():
                        for record in records:
                            self.handle_record(record, dlq)
                            done[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
                finally:
                    # One commit for what this poll brought (and for what was handled of it when a handler
                    # failed): a crash before it redelivers those records, and their marks make that a no-op.
                    if done:
                        self._commit(consumer, done)
                self._report_lag(consumer)
        finally:
            try:
                consumer.close(autocommit=False)
            finally:
                if pool is not None:
                    pool.shutdown(wait=True)
                dlq.close(timeout=10)

    def _handle_concurrently(
        self,
        batches: Mapping[TopicPartition, Sequence[ConsumerRecord]],
        dlq: KafkaProducer,
        pool: ThreadPoolExecutor,
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Handle one poll's records, a thread per key at a time (a key's records in their order, as one
        partition would), and return the offsets to commit; raises the first failure after all finished."""
        by_key: dict[tuple[TopicPartition, bytes | None], list[ConsumerRecord]] = {}
        for tp, records in batches.items():
            for record in records:
                by_key.setdefault((tp, record.key), []).append(record)

        def in_order(records: list[ConsumerRecord]) -> None:
            for record in records:
                self.handle_record(record, dlq)

        futures = [pool.submit(in_order, records) for records in by_key.values()]
        failures = [f.exception() for f in futures]
        failed = next((e for e in failures if e is not None), None)
        if failed is not None:
            raise failed
        return {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in batches.items() if records}

    def handle_record(self, record: ConsumerRecord, dlq: KafkaProducer) -> str:
        """Handle one record; returns the outcome (handled, duplicate, skipped, dead_lettered)."""
        try:
            event = CloudEvent.from_record(record.headers, record.value)
        except PoisonEvent as exc:
            self._dead_letter(record, dlq, str(exc), tenant="unknown", type_="unknown")
            return "dead_lettered"
        entry = self.handlers.get(event.type)
        if entry is None:
            metrics.CONSUMED.labels(self.group, event.tenant, event.type, "skipped").inc()
            return "skipped"
        message_class, handler = entry
        with context.bound(
            tenant=event.tenant,
            principal=self.principal,
            request_id=event.id,
            trace=f"{event.source}>{self.group}",
        ):
            if self.wants is not None and not self.wants(event):
                metrics.CONSUMED.labels(self.group, event.tenant, event.type, "skipped").inc()
                return "skipped"
            marked = event.type not in self.idempotent
            if marked and ProcessedEvent.objects(id=self.mark_prefix + event.id).first() is not None:
                metrics.CONSUMED.labels(self.group, event.tenant, event.type, "duplicate").inc()
                return "duplicate"
            try:
                payload = event.decode(message_class)
            except PoisonEvent as exc:
                self._dead_letter(record, dlq, str(exc), tenant=event.tenant, type_=event.type)
                return "dead_lettered"
            error = ""
            for attempt in range(self.max_retries + 1):
                try:
                    handler(event, payload)
                    break
                except PoisonEvent as exc:
                    self._dead_letter(record, dlq, str(exc), tenant=event.tenant, type_=event.type)
                    return "dead_lettered"
                except Exception as exc:
                    metrics.CONSUMER_FAILURES.labels(self.group, event.type).inc()
                    error = "".join(traceback.format_exception_only(exc)).strip()
                    log.warning("handler for %s failed (attempt %d): %s", event.type, attempt + 1, error)
                    if attempt == self.max_retries and dependencies.is_unavailable(exc):
                        # The database is down, the event is fine: not a dead letter. Uncommitted, it comes
                        # again once the worker restarts (ServiceHost), until the database is back.
                        raise
                    time.sleep(self.retry_backoff * (2**attempt))
            else:
                self._dead_letter(record, dlq, error, tenant=event.tenant, type_=event.type)
                return "dead_lettered"
            # An insert by _id (one write; an upsert would read first): a duplicate was recorded by a
            # concurrent delivery of the same event, and one mark is all that is needed.
            if marked:
                with contextlib.suppress(me.NotUniqueError, pymongo.errors.DuplicateKeyError):
                    ProcessedEvent(
                        id=self.mark_prefix + event.id, group=self.group, type=event.type, handled_at=datetime.now(UTC)
                    ).save(force_insert=True)
            metrics.CONSUMED.labels(self.group, event.tenant, event.type, "handled").inc()
            return "handled"

    def _dead_letter(self, record: ConsumerRecord, dlq: KafkaProducer, reason: str, *, tenant: str, type_: str) -> None:
        headers = [
            *list(record.headers or []),
            ("hl_dlq_reason", reason[:2000].encode()),
            ("hl_dlq_group", self.group.encode()),
            ("hl_original_topic", record.topic.encode()),
            ("hl_original_partition", str(record.partition).encode()),
            ("hl_original_offset", str(record.offset).encode()),
        ]
        dlq.send(self.dlq_topic, key=record.key, value=record.value, headers=headers).get(timeout=15)
        metrics.CONSUMED.labels(self.group, tenant, type_, "dead_lettered").inc()
        log.error(
            "dead-lettered %s:%d@%d to %s: %s",
            record.topic,
            record.partition,
            record.offset,
            self.dlq_topic,
            reason,
        )

    def _commit(self, consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit what was handled without waiting for the broker's answer: a commit that is lost (a crash, a
        rebalance) only redelivers records whose handling is idempotent or marked."""

        def answered(offsets: Any, response: Any) -> None:
            if isinstance(response, Exception):
                log.warning("offset commit for %s failed (it is made again): %s", self.group, response)
                self._commit_failed.update(offsets)

        consumer.commit_async(offsets, callback=answered)

    def _retry_commits(self, consumer: KafkaConsumer) -> None:
        """After a poll that brought nothing, commit again the partitions whose last commit failed (at their
        position: everything polled from them is handled by then). Else a group whose last commit failed
        keeps its lag until its next record, and a restart redelivers what it had handled."""
        if not self._commit_failed:
            return
        owned = consumer.assignment()
        again = [tp for tp in self._commit_failed if tp in owned]  # a partition moved away is its new owner's
        self._commit_failed.clear()
        if again:
            self._commit(consumer, {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in again})

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        """Every LAG_REPORT_SECONDS at most: asking for positions after every poll cost more than the poll."""
        self._report_dlq(consumer)
        now = time.monotonic()
        if now - self._lag_reported < LAG_REPORT_SECONDS:
            return
        self._lag_reported = now
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = consumer.position(tp, timeout_ms=100)
            except Exception:
                continue
            if pos is not None:
                metrics.CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(max(0, high - pos))

    _dlq_reported: float = 0.0

    def _report_dlq(self, consumer: KafkaConsumer) -> None:
        """The records this group's dead-letter topic holds (hongling_dlq_records), every DLQ_REPORT_SECONDS:
        what the "DLQ not empty" alert reads. Counted from the topic's offsets (two ListOffsets requests), so it
        is the topic's size whoever dead-lettered them, and survives this process's restarts, unlike a counter."""
        now = time.monotonic()
        if self._dlq_reported and now - self._dlq_reported < metrics.DLQ_REPORT_SECONDS:
            return
        self._dlq_reported = now
        try:
            known = consumer.partitions_for_topic(self.dlq_topic)
            if known is None:  # a consumer that just started: the topic's metadata comes with its first fetches
                raise LookupError("no metadata for the topic yet")
            parts = [TopicPartition(self.dlq_topic, p) for p in sorted(known)]
            held = 0
            if parts:
                start = consumer.beginning_offsets(parts, timeout_ms=2000)
                end = consumer.end_offsets(parts, timeout_ms=2000)
                held = sum(max(0, end[tp] - start[tp]) for tp in parts)
        except Exception as exc:  # the broker is away, or its metadata not here yet: asked again in a few seconds
            log.debug("dead-letter topic %s not measured: %s", self.dlq_topic, exc)
            self._dlq_reported = now - metrics.DLQ_REPORT_SECONDS + DLQ_RETRY_SECONDS
            return
        metrics.DLQ_RECORDS.labels(self.group, self.dlq_topic).set(held)


__all__ = [
    "FETCH_MAX_WAIT_MS",
    "HEARTBEAT_INTERVAL_MS",
    "POLL_TIMEOUT_MS",
    "SESSION_TIMEOUT_MS",
    "EventConsumer",
    "Handler",
    "ProcessedEvent",
    "TopicPartition",
    "member_client_id",
]
