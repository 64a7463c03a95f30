"""The services' events -> the measures' fact rows and counters (consumer group "evaluation-measures", a
worker of the evaluation process).

Reads hongling.dispatch.v1 (WhistleBlown, UnitReportedIn, DeadlineMissed), hongling.evaluation.v1
(TaskVerified, TaskVerificationFailed, IssueRated, UnitRated), hongling.alliance.v1 (AttendanceRecorded,
ShiftServed, ShiftMissed, ResourcePledged, ResourceDelivered, ResourcePledgeWithdrawn, ActivitySignedUp,
ActivitySignupWithdrawn, ActivityAttended; PostClaimed and PostClaimReleased are not needed: the posts duty is
expected of a claim only at its shift's end, which a released claim never reaches) and hongling.org.v1
(UnitJoined, PersonRegistered: who a helper is). For each poll: the records per tenant, one read-side
transaction per tenant (event ids claimed in eval_m_processed, ON CONFLICT DO NOTHING: a record seen twice
changes nothing; then the fact rows and counters, readmodel.apply_facts), offsets committed after. A record
that is not a CloudEvent or whose payload does not parse goes to the group's dead-letter topic.

`facts_of` (event -> partial fact rows) is pure: the unit tests and the rebuild use it as the worker does.
The rebuild (`python -m services.evaluation.measures rebuild`, and `replay` here) reads the topics from their
start into the same tables (or a scratch schema) with the same batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import alliance_events_pb2 as aev
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.events.v1 import org_events_pb2 as oev
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Histogram
from sqlalchemy import Connection, text

from services.common import context, readside
from services.common.consumer import (
    FETCH_MAX_WAIT_MS,
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    gathered_polls,
    member_client_id,
    subscribe_known,
)
from services.common.events import CloudEvent, PoisonEvent, dead_letter_topic, topic_for
from services.common.outbox import make_producer
from services.common.principal import Principal
from services.common.settings import Settings
from services.evaluation.measures import domain, readmodel

log = logging.getLogger(__name__)
GROUP = "evaluation-measures"
TOPICS = tuple(topic_for(s) for s in ("dispatch", "evaluation", "alliance", "org"))
PRINCIPAL = Principal(sub=f"service:{GROUP}", role="service", tenants=("*",))

EVENTS = Counter("hongling_measures_events_total", "Events the measures' consumer read, by outcome.", ["outcome"])
BATCH_SECONDS = Histogram(
    "hongling_measures_batch_seconds",
    "One poll's read-side transactions (all tenants).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        dev.WhistleBlown,
        dev.UnitReportedIn,
        dev.DeadlineMissed,
        eev.TaskVerified,
        eev.TaskVerificationFailed,
        eev.IssueRated,
        eev.UnitRated,
        aev.AttendanceRecorded,
        aev.ShiftServed,
        aev.ShiftMissed,
        aev.ResourcePledged,
        aev.ResourceDelivered,
        aev.ResourcePledgeWithdrawn,
        aev.ActivitySignedUp,
        aev.ActivitySignupWithdrawn,
        aev.ActivityAttended,
        oev.UnitJoined,
        oev.PersonRegistered,
    )
}

Partial = tuple[str, dict[str, Any]]  # (fact kind, partial row) or ("subject", row)


def _at(stamp: Timestamp, fallback: datetime) -> datetime:
    at = stamp.ToDatetime(tzinfo=UTC) if stamp.seconds or stamp.nanos else fallback.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _helper(kind: str, ident: str) -> str:
    return f"{kind}:{ident}" if kind and ident else ""


def _who(unit_id: str, person_id: str) -> list[str]:
    return [s for s in (_helper(domain.UNIT, unit_id), _helper(domain.PERSON, person_id)) if s]


def _duty_key(prefix: str, unit_id: str, person_id: str) -> str:
    return f"{prefix}:{_helper(domain.UNIT, unit_id) or _helper(domain.PERSON, person_id)}"


def _signup_key(msg: Any) -> str:
    """One duty fact per sign-up: the participant's first (signup 1, or 0 in older events) keeps the plain key."""
    nth = f"#{msg.signup}" if msg.signup > 1 else ""
    return _duty_key(f"activity:{msg.activity_id}{nth}", msg.unit_id, msg.person_id)


def facts_of(type_: str, msg: Any, when: datetime) -> list[Partial]:
    """The partial fact rows one event says (pure); `when` is the event's ce_time (a fallback for unset times)."""
    out: list[Partial] = []
    if type_ == "hongling.events.v1.WhistleBlown":
        at = _at(msg.blown_at, when)
        for kind, ident in zip(msg.target_kinds, msg.target_ids, strict=False):
            target = _helper(kind, ident)
            if target:
                out.append(
                    (
                        "target",
                        {
                            "whistle_id": msg.whistle_id,
                            "target": target,
                            "community_id": msg.community_id,
                            "called": True,
                            "blown_at": at,
                        },
                    )
                )
    elif type_ == "hongling.events.v1.UnitReportedIn":
        target = _helper(msg.responder_kind, msg.responder_id)
        if target and msg.whistle_id:
            out.append(
                (
                    "target",
                    {
                        "whistle_id": msg.whistle_id,
                        "target": target,
                        "reported": True,
                        "in_time": not msg.late,
                        "reported_at": _at(msg.reported_at, when),
                    },
                )
            )
    elif type_ == "hongling.events.v1.DeadlineMissed":
        if msg.deadline == "completion" and msg.task_id:
            out.append(("task", {"task_id": msg.task_id, "community_id": msg.community_id, "missed": True}))
    elif type_ == "hongling.events.v1.TaskVerified":
        out.append(
            (
                "task",
                {
                    "task_id": msg.task_id,
                    "community_id": msg.community_id,
                    "call_type": msg.call_type,
                    "crew": sorted(set(msg.crew_ids)),
                    "verdicts": 1,
                    "first_pass": msg.attempt == 1,
                    "anchor_at": _at(msg.verified_at, when),
                },
            )
        )
    elif type_ == "hongling.events.v1.TaskVerificationFailed":
        resident = msg.method == "resident"
        row: dict[str, Any] = {
            "task_id": msg.task_id,
            "community_id": msg.community_id,
            "call_type": msg.call_type,
            "crew": sorted(set(msg.crew_ids)),
            "failures": 1,
            "resident_failures": 1 if resident else 0,
        }
        if not resident:  # a verdict; the resident's rejection of a verified result reopens, it is no verdict
            row.update(verdicts=1, first_fail=msg.attempt <= 1, anchor_at=_at(msg.failed_at, when))
        out.append(("task", row))
    elif type_ == "hongling.events.v1.IssueRated":
        out.append(
            (
                "rating",
                {
                    "rating_id": msg.rating_id or f"issue:{msg.issue_id}",
                    "community_id": msg.community_id,
                    "kind": "issue",
                    "subjects": sorted(set(msg.crew_ids)),
                    "score": msg.score,
                    "anchor_at": _at(msg.rated_at, when),
                },
            )
        )
    elif type_ == "hongling.events.v1.UnitRated":
        out.append(
            (
                "rating",
                {
                    "rating_id": msg.rating_id,
                    "community_id": msg.community_id,
                    "kind": "unit",
                    "subjects": _who(msg.unit_id, ""),
                    "score": msg.score,
                    "anchor_at": _at(msg.rated_at, when),
                    "rated_quarter": msg.quarter,
                },
            )
        )
    elif type_ == "hongling.events.v1.AttendanceRecorded":
        out.append(
            (
                "duty",
                {
                    "fact_id": _duty_key(f"meeting:{msg.meeting_id}", msg.unit_id, msg.person_id),
                    "community_id": msg.community_id,
                    "duty": "meetings",
                    "subjects": _who(msg.unit_id, msg.person_id),
                    "expected": msg.status != "excused",
                    "met": msg.status == "on_time",
                    "excused": msg.status == "excused",
                    "anchor_at": _at(msg.starts_at, _at(msg.at, when)),
                },
            )
        )
    elif type_ in ("hongling.events.v1.ShiftServed", "hongling.events.v1.ShiftMissed"):
        served = type_.endswith("ShiftServed")
        out.append(
            (
                "duty",
                {
                    "fact_id": _duty_key(f"shift:{msg.post_id}/{msg.shift_id}", msg.unit_id, msg.person_id),
                    "community_id": msg.community_id,
                    "duty": "posts",
                    "subjects": _who(msg.unit_id, msg.person_id),
                    "expected": True,
                    "met": served,
                    "anchor_at": _at(msg.at, when),
                },
            )
        )
    elif type_ == "hongling.events.v1.ResourcePledged":
        out.append(
            (
                "duty",
                {
                    "fact_id": f"pledge:{msg.pledge_id}",
                    "community_id": msg.community_id,
                    "duty": "resources",
                    "subjects": _who(msg.unit_id, msg.person_id),
                    "expected": True,
                    "anchor_at": _at(msg.at, when),
                },
            )
        )
    elif type_ == "hongling.events.v1.ResourceDelivered":
        out.append(
            (
                "duty",
                {
                    "fact_id": f"pledge:{msg.pledge_id}",
                    "community_id": msg.community_id,
                    "duty": "resources",
                    "subjects": _who(msg.unit_id, msg.person_id),
                    "expected": True,
                    "met": True,
                    "anchor_at": _at(msg.pledged_at, _at(msg.at, when)),
                },
            )
        )
    elif type_ == "hongling.events.v1.ResourcePledgeWithdrawn":  # taken back before delivery: not expected
        out.append(
            (
                "duty",
                {
                    "fact_id": f"pledge:{msg.pledge_id}",
                    "community_id": msg.community_id,
                    "duty": "resources",
                    "subjects": _who(msg.unit_id, msg.person_id),
                    "excused": True,
                    "anchor_at": _at(msg.pledged_at, _at(msg.at, when)),
                },
            )
        )
    elif type_ == "hongling.events.v1.ActivitySignupWithdrawn":
        if not msg.waiting:  # a place given back before the start: not expected (a waiting one never was)
            out.append(
                (
                    "duty",
                    {
                        "fact_id": _signup_key(msg),
                        "community_id": msg.community_id,
                        "duty": "cobuilding",
                        "subjects": _who(msg.unit_id, msg.person_id),
                        "excused": True,
                        "anchor_at": _at(msg.at, when),
                    },
                )
            )
    elif type_ in ("hongling.events.v1.ActivitySignedUp", "hongling.events.v1.ActivityAttended"):
        attended = type_.endswith("Attended")
        if attended or not msg.waiting:
            out.append(
                (
                    "duty",
                    {
                        "fact_id": _signup_key(msg),
                        "community_id": msg.community_id,
                        "duty": "cobuilding",
                        "subjects": _who(msg.unit_id, msg.person_id),
                        "expected": True,
                        "met": attended,
                        "anchor_at": _at(msg.at, when),
                    },
                )
            )
    elif type_ == "hongling.events.v1.UnitJoined":
        out.append(
            (
                "subject",
                {
                    "subject": _helper(domain.UNIT, msg.unit_id),
                    "kind": domain.UNIT,
                    "unit_kind": msg.kind,
                    "roles": [],
                    "community_id": msg.community_id,
                    "name_zh": msg.name_zh,
                    "version": int(msg.version),
                },
            )
        )
    elif type_ == "hongling.events.v1.PersonRegistered":
        out.append(
            (
                "subject",
                {
                    "subject": _helper(domain.PERSON, msg.person_id),
                    "kind": domain.PERSON,
                    "unit_kind": "",
                    "roles": sorted(set(msg.roles)),
                    "community_id": msg.community_id,
                    "name_zh": "",
                    "version": int(msg.version),
                },
            )
        )
    return [(k, r) for k, r in out if (k == "subject" and r["subject"]) or (k != "subject" and _has_key(k, r))]


def _has_key(kind: str, row: Mapping[str, Any]) -> bool:
    return all(row.get(k) for k in domain.KEYS[kind])


# ---------------------------------------------------------------- applying a batch


def decode(record: Any) -> tuple[CloudEvent, Message] | None:
    """(event, payload) of a record this consumer reads; None for a type it does not; PoisonEvent if broken."""
    event = CloudEvent.from_record(record.headers, record.value)
    cls = TYPES.get(event.type)
    if cls is None:
        return None
    return event, event.decode(cls)


def apply_tenant(conn: Connection, events: Sequence[tuple[CloudEvent, Message]]) -> set[str]:
    """One tenant's events of a batch in the caller's transaction; returns the quarters whose counters changed."""
    fresh = readmodel.claim_events(conn, [e.id for e, _ in events])
    partials: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for event, msg in events:
        if event.id not in fresh or event.id in seen:
            continue
        seen.add(event.id)
        for kind, row in facts_of(event.type, msg, event.time):
            partials[kind].append(row)
    subjects = partials.pop("subject", [])
    if subjects:
        readmodel.apply_subjects(conn, subjects)
    tally = readmodel.apply_facts(conn, partials)
    return {domain.quarter_of_period(k[1]) for k, n in tally.items() if n}


@contextmanager
def _bound_schema(tenant: str, suffix: str) -> Iterator[Connection]:
    """A transaction of the tenant in its schema (suffix "") or in a scratch copy (the rebuild's)."""
    if not suffix:
        with readside.begin(tenant) as conn:
            yield conn
        return
    with readside.engine().begin() as conn:
        yield conn.execution_options(schema_translate_map={readside.PLACEHOLDER: readside.schema_for(tenant) + suffix})


def apply_records(
    records: Iterable[Any], *, suffix: str = "", dead: list[tuple[Any, str]] | None = None
) -> dict[str, set[str]]:
    """A poll's records: per tenant, one transaction; returns tenant -> quarters changed."""
    per_tenant: dict[str, list[tuple[CloudEvent, Message]]] = defaultdict(list)
    for record in records:
        try:
            found = decode(record)
        except PoisonEvent as exc:
            EVENTS.labels("poison").inc()
            if dead is not None:
                dead.append((record, str(exc)))
            continue
        if found is None:
            EVENTS.labels("skipped").inc()
            continue
        per_tenant[found[0].tenant].append(found)
    changed: dict[str, set[str]] = {}
    for tenant in sorted(per_tenant):
        with context.bound(tenant=tenant, principal=PRINCIPAL), _bound_schema(tenant, suffix) as conn:
            changed[tenant] = apply_tenant(conn, per_tenant[tenant])
        EVENTS.labels("applied").inc(len(per_tenant[tenant]))
    return changed


class MeasuresWorker:
    """The consumer group: poll, one transaction per tenant, commit offsets, then tell the boards' timers."""

    def __init__(self, settings: Settings, *, max_records: int = 5000, gather_ms: int = 500) -> None:
        self.name = f"{GROUP}-worker"
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.max_records = max_records
        self.gather = gather_ms / 1000

    def run(self, stop: threading.Event) -> None:
        from services.evaluation.measures import handlers  # the boards' timers (handlers import this module)

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=GROUP,
            client_id=member_client_id(self.name),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_records=self.max_records,
            max_poll_interval_ms=300000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # idle cost (services/common/consumer.py)
        )
        subscribe_known(consumer, TOPICS, stop)
        dlq = make_producer(self.bootstrap, f"{self.name}-dlq")
        log.info("measures read %s", ", ".join(TOPICS))
        try:
            for batches in gathered_polls(consumer, stop, self.gather):
                if not batches:
                    continue
                offsets = {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in batches.items() if rs}
                records = [r for tp in sorted(batches, key=lambda t: (t.topic, t.partition)) for r in batches[tp]]
                while not stop.is_set():
                    dead: list[tuple[Any, str]] = []
                    started = time.monotonic()
                    try:
                        changed = apply_records(records, dead=dead)
                        break
                    except Exception as exc:  # the read side is away: the same records again
                        log.warning("measures batch failed, retrying: %s", exc.__class__.__name__)
                        stop.wait(0.5)
                else:
                    break
                BATCH_SECONDS.observe(time.monotonic() - started)
                for record, reason in dead:
                    dlq.send(
                        dead_letter_topic(GROUP),
                        key=record.key,
                        value=record.value,
                        headers=[*list(record.headers or []), ("hl_dlq_reason", reason[:2000].encode())],
                    )
                consumer.commit(offsets)
                for tenant, quarters in changed.items():
                    if quarters:
                        try:
                            handlers.quarters_changed(tenant, quarters)
                        except Exception as exc:  # the write side is away: the next batch or the rescan
                            log.warning("boards' timers not scheduled for %s: %s", tenant, exc.__class__.__name__)
        finally:
            consumer.close(autocommit=False)
            dlq.close(timeout=10)


def build_worker(settings: Settings) -> MeasuresWorker:
    return MeasuresWorker(settings)


# ---------------------------------------------------------------- rebuild from the events


def partitions(consumer: KafkaConsumer) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in TOPICS for p in sorted(consumer.partitions_for_topic(t) or ())]


def prepare_scratch(suffix: str) -> None:
    """Empty copies of the rebuilt tables in `hl_<tenant><suffix>` for every tenant."""
    for tenant, schema in readside.all_schemas():
        if not tenant:
            continue
        with readside.engine().begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}{suffix}"'))
            bound = conn.execution_options(schema_translate_map={readside.PLACEHOLDER: schema + suffix})
            readside.METADATA.create_all(bound, tables=list(readmodel.REBUILT))


def truncate_live() -> None:
    for tenant, _ in readside.all_schemas():
        if tenant:
            with readside.begin(tenant) as conn:
                for table in readmodel.REBUILT:
                    conn.execute(table.delete())


def replay(bootstrap: str, *, suffix: str, batch: int = 5000) -> tuple[int, dict[TopicPartition, int]]:
    """Every event now on the topics, from their start to their end offsets as they were when asked, applied
    in batches into the tables of schema suffix (""): live, else a scratch copy; returns (records, ends)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=batch)
    try:
        parts = partitions(consumer)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        total = 0
        while any(consumer.position(p) < ends[p] for p in parts):
            polled = consumer.poll(timeout_ms=500, max_records=batch)
            records: list[Any] = []
            for tp, rs in polled.items():
                records.extend(r for r in rs if r.offset < ends[tp])
            if records:
                apply_records(records, suffix=suffix)
                total += len(records)
        return total, ends
    finally:
        consumer.close()


def rewind_group(bootstrap: str, ends: Mapping[TopicPartition, int]) -> None:
    """Move the group to where a replay of the live tables ended (the worker stopped meanwhile)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    try:
        consumer.assign(list(ends))
        consumer.commit({tp: OffsetAndMetadata(n, "", -1) for tp, n in ends.items()})
    finally:
        consumer.close(autocommit=False)


def caught_up(bootstrap: str, ends: Mapping[TopicPartition, int]) -> bool:
    """Has the group committed at least these offsets?"""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    try:
        return all((consumer.committed(tp) or 0) >= n for tp, n in ends.items())
    finally:
        consumer.close(autocommit=False)
