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
from sqlalchemy import select

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
    # withdrawals (the rebuild must give the same rows): u2 withdraws a pledge; u1 gives back its place on an
    # activity and signs up again, then attends
    pledge, act = unique("pl"), unique("act")
    uid1, uid2 = u1.split(":")[1], u2.split(":")[1]
    publish(
        producer,
        "alliance",
        pledge,
        aev.ResourcePledged(pledge_id=pledge, tenant=T, community_id=community, unit_id=uid2, at=ts(at)),
        at,
    )
    publish(
        producer,
        "alliance",
        pledge,
        aev.ResourcePledgeWithdrawn(pledge_id=pledge, tenant=T, community_id=community, unit_id=uid2, at=ts(later)),
        later,
    )
    for msg in (
        aev.ActivitySignedUp(activity_id=act, tenant=T, community_id=community, unit_id=uid1, signup=1, at=ts(at)),
        aev.ActivitySignupWithdrawn(
            activity_id=act, tenant=T, community_id=community, unit_id=uid1, signup=1, at=ts(at)
        ),
        aev.ActivitySignedUp(activity_id=act, tenant=T, community_id=community, unit_id=uid1, signup=2, at=ts(at)),
        aev.ActivityAttended(activity_id=act, tenant=T, community_id=community, unit_id=uid1, signup=2, at=ts(later)),
    ):
        publish(producer, "alliance", act, msg, at)
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
    cobuilding = measures(stub, system, who["u1"], period, community)["duty_cobuilding"]
    assert (cobuilding.numerator, cobuilding.denominator) == (1, 1)  # the place given back is not expected
    assert measures(stub, system, who["u2"], period, community)["duty_resources"].denominator == 0  # withdrawn
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


def processed(ids: list[str]) -> bool:
    """Has the consumer group applied every one of these events (eval_m_processed, same transaction as the
    counters)?"""
    with readside.connect(T) as conn:
        found = conn.execute(select(readmodel.PROCESSED.c.event_id).where(readmodel.PROCESSED.c.event_id.in_(ids)))
        return len(found.all()) == len(set(ids))


def figures(stub: Any, system: System, subject: str, period: str, community: str) -> dict[str, tuple[float, float]]:
    keys = ("duties", *(f"duty_{d}" for d in domain.DUTIES))
    found = measures(stub, system, subject, period, community)
    return {k: (found[k].numerator, found[k].denominator) for k in keys}


def test_five_duty_compliance_counts_posts_resources_and_co_building_and_a_withdrawal_is_not_expected(
    system: System, producer: KafkaProducer, stub: Any
) -> None:
    """A unit's month and quarter: posts (claimed → served, claimed → missed, claimed → released), resources
    (pledged → delivered, pledged and not delivered, pledged → withdrawn, the withdrawal arriving first),
    co-building (signed up → attended, signed up and absent, a place given back and a new sign-up attended, a
    waiting-list sign-up withdrawn), a meeting on time and a whistle answered."""
    community, unit, other = unique("c-duties"), unique("u"), unique("u")
    subject = f"member_unit:{unit}"
    quarter = domain.quarter_of(datetime.now(UTC) - timedelta(days=1))
    year, q = domain.parse_quarter(quarter)
    first = datetime(year, 3 * q - 2, 5, 2, 0, tzinfo=UTC)  # the quarter's first month (Shanghai 10:00)
    second = datetime(year, 3 * q - 1, 5, 2, 0, tzinfo=UTC)  # its second month
    month_1, month_2 = domain.month_of(first), domain.month_of(second)
    ids: list[str] = []

    def send(service: str, key: str, msg: Message, at: datetime, counted: bool = True) -> None:
        event_id = publish(producer, service, key, msg, at)
        if counted:
            ids.append(event_id)

    # ---- posts, in the first month: one shift served, one missed, one claim released before its shift
    post = unique("post")
    shifts = [unique("s") for _ in range(3)]
    for shift in shifts:
        claim = aev.PostClaimed(
            post_id=post,
            tenant=T,
            community_id=community,
            shift_id=shift,
            unit_id=unit,
            person_id="",
            post_name="文明劝导岗",
            shift_starts_at=ts(first),
            shift_ends_at=ts(first + timedelta(hours=2)),
            at=ts(first - timedelta(days=1)),
            claim_id=unique("pc"),
        )
        send("alliance", post, claim, first, counted=False)  # not read by evaluation: no expectation yet
    send(
        "alliance",
        post,
        aev.ShiftServed(
            post_id=post, tenant=T, community_id=community, shift_id=shifts[0], unit_id=unit, hours=2, at=ts(first)
        ),
        first,
    )
    send(
        "alliance",
        post,
        aev.ShiftMissed(
            post_id=post,
            tenant=T,
            community_id=community,
            shift_id=shifts[1],
            unit_id=unit,
            at=ts(first + timedelta(hours=2)),
        ),
        first,
    )
    send(
        "alliance",
        post,
        aev.PostClaimReleased(
            post_id=post,
            tenant=T,
            community_id=community,
            shift_id=shifts[2],
            unit_id=unit,
            claim_id=unique("pc"),
            shift_starts_at=ts(first),
            at=ts(first - timedelta(hours=5)),
        ),
        first,
        counted=False,
    )

    # ---- resources, in the first month: delivered, not delivered, withdrawn (its withdrawal sent first)
    delivered, open_, withdrawn = unique("pl"), unique("pl"), unique("pl")
    for pledge in (withdrawn, delivered, open_):
        if pledge == withdrawn:
            send(
                "alliance",
                pledge,
                aev.ResourcePledgeWithdrawn(
                    pledge_id=pledge,
                    tenant=T,
                    community_id=community,
                    unit_id=unit,
                    resource="货车",
                    quantity=1,
                    withdrawn_by="member",
                    pledged_at=ts(first),
                    at=ts(first + timedelta(hours=3)),
                ),
                first,
            )
        send(
            "alliance",
            pledge,
            aev.ResourcePledged(
                pledge_id=pledge,
                tenant=T,
                community_id=community,
                unit_id=unit,
                resource="货车",
                quantity=1,
                unit_of_measure="台",
                for_kind="activity",
                for_id="a",
                at=ts(first),
            ),
            first,
        )
    send(
        "alliance",
        delivered,
        aev.ResourceDelivered(
            pledge_id=delivered,
            tenant=T,
            community_id=community,
            unit_id=unit,
            resource="货车",
            quantity=1,
            pledged_at=ts(first),
            at=ts(first + timedelta(days=1)),
        ),
        first,
    )
    # another unit pledges and withdraws: it owes nothing
    gone = unique("pl")
    send(
        "alliance",
        gone,
        aev.ResourcePledged(
            pledge_id=gone, tenant=T, community_id=community, unit_id=other, resource="会议室", quantity=1, at=ts(first)
        ),
        first,
    )
    send(
        "alliance",
        gone,
        aev.ResourcePledgeWithdrawn(
            pledge_id=gone,
            tenant=T,
            community_id=community,
            unit_id=other,
            resource="会议室",
            quantity=1,
            pledged_at=ts(first),
            at=ts(first),
        ),
        first,
    )

    # ---- co-building, in the second month
    attended, absent, again, waited = (unique("act") for _ in range(4))

    def signed(activity: str, n: int, *, waiting: bool = False) -> aev.ActivitySignedUp:
        return aev.ActivitySignedUp(
            activity_id=activity,
            tenant=T,
            community_id=community,
            unit_id=unit,
            waiting=waiting,
            position=1 if waiting else 0,
            at=ts(second),
            signup=n,
        )

    def left(activity: str, n: int, *, waiting: bool = False) -> aev.ActivitySignupWithdrawn:
        return aev.ActivitySignupWithdrawn(
            activity_id=activity,
            tenant=T,
            community_id=community,
            unit_id=unit,
            waiting=waiting,
            signup=n,
            at=ts(second + timedelta(hours=1)),
        )

    def came(activity: str, n: int) -> aev.ActivityAttended:
        return aev.ActivityAttended(
            activity_id=activity,
            tenant=T,
            community_id=community,
            unit_id=unit,
            hours=2,
            at=ts(second + timedelta(days=1)),
            signup=n,
        )

    for key, msg in (
        (attended, signed(attended, 1)),
        (attended, came(attended, 1)),
        (absent, signed(absent, 1)),
        (again, signed(again, 1)),
        (again, left(again, 1)),  # a place given back: not expected …
        (again, signed(again, 2)),  # … a new sign-up is, and it was attended
        (again, came(again, 2)),
        (waited, signed(waited, 1, waiting=True)),
        (waited, left(waited, 1, waiting=True)),
    ):
        send("alliance", key, msg, second)

    # ---- a meeting on time and a whistle answered in time, in the second month
    meeting, whistle = unique("m"), unique("w")
    send(
        "alliance",
        meeting,
        aev.AttendanceRecorded(
            meeting_id=meeting,
            tenant=T,
            community_id=community,
            unit_id=unit,
            status="on_time",
            starts_at=ts(second),
            at=ts(second),
        ),
        second,
    )
    send(
        "dispatch",
        whistle,
        dev.WhistleBlown(
            whistle_id=whistle,
            tenant=T,
            community_id=community,
            call_type="service",
            target_kinds=["member_unit"],
            target_ids=[unit],
            blown_at=ts(second),
        ),
        second,
    )
    send(
        "dispatch",
        whistle,
        dev.UnitReportedIn(
            whistle_id=whistle,
            tenant=T,
            responder_kind="member_unit",
            responder_id=unit,
            answer="accept",
            late=False,
            reported_at=ts(second + timedelta(minutes=5)),
        ),
        second,
    )

    wait_for(lambda: processed(ids), timeout=180)

    got = {p: figures(stub, system, subject, p, community) for p in (month_1, month_2, quarter)}
    assert got[month_1] == {
        "duty_posts": (1, 2),  # served ÷ claimed shifts that ended (the released claim is neither)
        "duty_resources": (1, 2),  # delivered ÷ pledged (the withdrawn one is not expected)
        "duty_cobuilding": (0, 0),
        "duty_meetings": (0, 0),
        "duty_whistles": (0, 0),
        "duties": (2, 4),
    }
    assert got[month_2] == {
        "duty_posts": (0, 0),
        "duty_resources": (0, 0),
        "duty_cobuilding": (2, 3),  # attended, absent, the second sign-up attended (the first given back)
        "duty_meetings": (1, 1),
        "duty_whistles": (1, 1),
        "duties": (4, 5),
    }
    assert got[quarter] == {
        "duty_posts": (1, 2),
        "duty_resources": (1, 2),
        "duty_cobuilding": (2, 3),
        "duty_meetings": (1, 1),
        "duty_whistles": (1, 1),
        "duties": (6, 9),
    }
    whole = measures(stub, system, subject, quarter, community)["duties"]
    assert whole.rate == pytest.approx(6 / 9)
    # the unit that pledged and withdrew owes nothing; the community's count is the sum of its units'
    assert figures(stub, system, f"member_unit:{other}", quarter, community)["duty_resources"] == (0, 0)
    assert figures(stub, system, f"community:{community}", quarter, "")["duties"] == (6, 9)
    # the rebuild from the fact rows agrees with the counters kept event by event
    recount = stub.RebuildQuarter(pb.RebuildQuarterRequest(quarter=quarter), metadata=md(system, "ops"))
    assert recount.differing == 0
