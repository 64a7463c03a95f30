"""Measures and boards fed by real CloudEvents on real Kafka (no mocks): the consumer group evaluation-measures
keeps the fact rows and counters; a replay of the topics from their start builds the same tables byte for byte;
a quarter's recount from its fact rows equals the kept counters; a closed quarter's boards freeze (BoardsFrozen)
and a late event produces a correction that states its difference."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.evaluation.v1 import evaluation_pb2 as pb
from hongling.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from hongling.events.v1 import alliance_events_pb2 as aev
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.events.v1 import org_events_pb2 as oev
from kafka import KafkaProducer

from services.common import readside
from services.common.events import CloudEvent, record_key, topic_for
from services.evaluation.measures import consumer, domain, readmodel
from tests.conftest import System, call_metadata, read_topic, unique, wait_for

T = "shanggao"


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


@pytest.fixture(scope="module")
def stub(system: System) -> pb_grpc.EvaluationServiceStub:
    return pb_grpc.EvaluationServiceStub(system.channel("evaluation"))


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def publish(producer: KafkaProducer, service: str, key: str, msg: Message, at: datetime, event_id: str = "") -> str:
    ce = CloudEvent(
        id=event_id or uuid.uuid4().hex,
        source=f"/hongling/{service}/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=at,
        subject=key,
        tenant=T,
        data=msg.SerializeToString(),
    )
    producer.send(topic_for(service), key=record_key(T, key), value=ce.data, headers=ce.headers()).get(timeout=15)
    return ce.id


def md(system: System, role: str = "subdistrict_admin") -> list[tuple[str, str]]:
    return call_metadata(system.settings, T, role=role)


def measures(stub: Any, system: System, subject: str, period: str, community: str = "") -> dict[str, pb.MeasureValue]:
    found = stub.GetMeasures(
        pb.GetMeasuresRequest(subject=subject, period=period, community_id=community), metadata=md(system)
    )
    return {m.key: m for m in found.measures}


def feed_community(producer: KafkaProducer, community: str, at: datetime) -> dict[str, str]:
    """A quarter's work of one community: a whistle to three targets (two in time, one late), three tasks (one
    passed first time, one failed then passed, one with a missed deadline and a resident's rejection), ratings
    (5, 3) and duty facts. One event is sent twice (same id): it must count once."""
    u1, u2, p1 = f"member_unit:{unique('u')}", f"member_unit:{unique('u')}", f"person:{unique('p')}"
    w = unique("w")
    kinds, ids = zip(*(s.split(":", 1) for s in (u1, u2, p1)), strict=True)
    publish(
        producer,
        "dispatch",
        w,
        dev.WhistleBlown(
            whistle_id=w,
            tenant=T,
            community_id=community,
            call_type="service",
            target_kinds=kinds,
            target_ids=ids,
            blown_at=ts(at),
        ),
        at,
    )
    for subject, late in ((u1, False), (p1, False), (u2, True)):
        kind, ident = subject.split(":", 1)
        publish(
            producer,
            "dispatch",
            w,
            dev.UnitReportedIn(
                whistle_id=w,
                tenant=T,
                responder_kind=kind,
                responder_id=ident,
                answer="accept",
                late=late,
                reported_at=ts(at + timedelta(minutes=5)),
            ),
            at,
        )
    t1, t2, t3 = unique("t"), unique("t"), unique("t")
    later = at + timedelta(days=1)
    crew = [u1, p1]
    twice = publish(
        producer,
        "evaluation",
        t1,
        eev.TaskVerified(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=t1,
            attempt=1,
            crew_ids=crew,
            verified_at=ts(later),
        ),
        later,
    )
    publish(
        producer,
        "evaluation",
        t1,
        eev.TaskVerified(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=t1,
            attempt=1,
            crew_ids=crew,
            verified_at=ts(later),
        ),
        later,
        event_id=twice,
    )
    publish(
        producer,
        "evaluation",
        t2,
        eev.TaskVerificationFailed(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=t2,
            attempt=1,
            method="review",
            crew_ids=crew,
            failed_at=ts(later),
        ),
        later,
    )
    publish(
        producer,
        "evaluation",
        t2,
        eev.TaskVerified(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=t2,
            attempt=2,
            crew_ids=crew,
            verified_at=ts(later + timedelta(hours=2)),
        ),
        later,
    )
    publish(
        producer,
        "dispatch",
        t3,
        dev.DeadlineMissed(tenant=T, deadline="completion", task_id=t3, community_id=community),
        later,
    )
    publish(
        producer,
        "evaluation",
        t3,
        eev.TaskVerified(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=t3,
            attempt=1,
            crew_ids=crew,
            verified_at=ts(later),
        ),
        later,
    )
    publish(
        producer,
        "evaluation",
        t3,
        eev.TaskVerificationFailed(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=t3,
            attempt=1,
            method="resident",
            crew_ids=crew,
            failed_at=ts(later + timedelta(days=1)),
        ),
        later,
    )
    for task, score in ((t1, 5), (t2, 3)):
        publish(
            producer,
            "evaluation",
            task,
            eev.IssueRated(
                issue_id=unique("i"),
                tenant=T,
                community_id=community,
                score=score,
                crew_ids=crew,
                rating_id=unique("r"),
                rated_at=ts(later),
            ),
            later,
        )
    m = unique("m")
    publish(
        producer,
        "alliance",
        m,
        aev.AttendanceRecorded(
            meeting_id=m,
            tenant=T,
            community_id=community,
            unit_id=u1.split(":")[1],
            status="on_time",
            starts_at=ts(at),
            at=ts(at),
        ),
        at,
    )
    publish(
        producer,
        "alliance",
        m,
        aev.AttendanceRecorded(
            meeting_id=m,
            tenant=T,
            community_id=community,
            unit_id=u2.split(":")[1],
            status="absent",
            starts_at=ts(at),
            at=ts(at),
        ),
        at,
    )
    return {"u1": u1, "u2": u2, "p1": p1}


def test_measures_follow_the_events_and_a_replay_from_the_start_builds_the_same_tables(
    system: System, producer: KafkaProducer, stub: Any
) -> None:
    community = unique("c-measures")
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    period = domain.quarter_of(at)
    who = feed_community(producer, community, at)

    def settled() -> dict[str, pb.MeasureValue] | None:
        found = measures(stub, system, f"community:{community}", period)
        return found if found["duty_meetings"].denominator == 2 and found["satisfaction"].denominator == 2 else None

    got = wait_for(settled, timeout=180)
    assert (got["response"].numerator, got["response"].denominator) == (2, 3)
    assert (got["resolution"].numerator, got["resolution"].denominator) == (2, 3)  # the duplicate counted once
    assert (got["on_time"].numerator, got["reopen"].numerator) == (2, 2)
    assert (got["satisfaction"].numerator, got["satisfaction"].denominator) == (1, 2)
    unit = measures(stub, system, who["u1"], period, community)
    assert unit["resolution"].rate == pytest.approx(2 / 3)
    assert unit["duty_meetings"].rate == 1.0

    consumer.prepare_scratch("_rebuild")
    _, ends = consumer.replay(system.settings.kafka_bootstrap, suffix="_rebuild")
    wait_for(lambda: consumer.caught_up(system.settings.kafka_bootstrap, ends), timeout=180)
    with readside.connect(T) as live:
        incremental = readmodel.dump(live, community_id=community)
    with readside.engine().connect() as conn:
        scratch = conn.execution_options(
            schema_translate_map={readside.PLACEHOLDER: readside.schema_for(T) + "_rebuild"}
        )
        rebuilt = readmodel.dump(scratch, community_id=community)
    assert incremental.count(b"\n") > 20
    assert rebuilt == incremental

    recount = stub.RebuildQuarter(pb.RebuildQuarterRequest(quarter=period), metadata=md(system, "ops"))
    assert recount.differing == 0 and recount.fact_rows > 0


def board(stub: Any, system: System, quarter: str, community: str, version: int = 0) -> pb.BoardSet:
    return stub.GetBoards(
        pb.GetBoardsRequest(quarter=quarter, community_id=community, version=version), metadata=md(system)
    )


def test_a_closed_quarters_boards_freeze_and_a_late_event_makes_a_correction_never_a_silent_change(
    system: System, producer: KafkaProducer, stub: Any
) -> None:
    community = unique("c-boards")
    at = datetime(2025, 5, 10, 2, 0, tzinfo=UTC)  # 2025Q2: long closed, its grace long past
    quarter = "2025Q2"
    units = {}
    for name in ("红叶物业", "青松物业"):
        ident = unique("u")
        units[name] = ident
        publish(
            producer,
            "org",
            ident,
            oev.UnitJoined(unit_id=ident, community_id=community, name_zh=name, kind="property_company", version=1),
            at,
        )

    def known() -> bool:
        with readside.connect(T) as conn:
            return len(readmodel.subjects(conn, [f"member_unit:{u}" for u in units.values()])) == 2

    wait_for(known, timeout=180)  # who the units are, before their facts
    for i in range(3):
        task = unique("t")
        publish(
            producer,
            "evaluation",
            task,
            eev.TaskVerified(
                verification_id=unique("v"),
                tenant=T,
                community_id=community,
                task_id=task,
                attempt=1,
                crew_ids=[f"member_unit:{units['红叶物业']}"],
                verified_at=ts(at + timedelta(days=i)),
            ),
            at,
        )

    def frozen_with(workload: int) -> pb.BoardSet | None:
        found = board(stub, system, quarter, community)
        red = next(b for b in found.boards if b.kind == "red_property")
        return found if found.status == "frozen" and [e.workload for e in red.entries] == [workload] else None

    first = wait_for(lambda: frozen_with(3), timeout=180)
    red = next(b for b in first.boards if b.kind == "red_property")
    assert [e.name_zh for e in red.entries] == ["红叶物业"]
    assert red.entries[0].explanation and red.entries[0].parts

    late = unique("t")
    publish(
        producer,
        "evaluation",
        late,
        eev.TaskVerified(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=late,
            attempt=1,
            crew_ids=[f"member_unit:{units['青松物业']}"],
            verified_at=ts(at),
        ),
        datetime.now(UTC),
    )

    def corrected() -> pb.BoardSet | None:
        found = board(stub, system, quarter, community)
        return found if found.version > first.version else None

    second = wait_for(corrected, timeout=180)
    assert second.corrects_version == first.version
    assert "青松物业" in second.changes and "新上榜" in second.changes
    assert list(second.versions)[-2:] == [first.version, second.version]
    kept = board(stub, system, quarter, community, version=first.version)
    assert [e.name_zh for e in next(b for b in kept.boards if b.kind == "red_property").entries] == ["红叶物业"]

    def published() -> list[eev.BoardsFrozen]:
        out = []
        for r in read_topic(system.settings.kafka_bootstrap, topic_for("evaluation")):
            headers = dict(r.headers or [])
            if headers.get("ce_type") == b"hongling.events.v1.BoardsFrozen":
                msg = eev.BoardsFrozen()
                msg.ParseFromString(r.value)
                if msg.community_id == community:
                    out.append(msg)
        return out if any(m.version == second.version for m in out) else []

    events = {m.version: m for m in wait_for(published, timeout=180)}
    assert events[1].corrects_version == 0
    assert events[second.version].corrects_version == first.version
    assert "青松物业" in events[second.version].changes
