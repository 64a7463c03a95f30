"""评单 over real gRPC, Kafka and FerretDB: the follow-up code intake hands out once and keeps as a hash, the
ratings area learning verdicts from real TaskVerified events (published as the verification area's relay
would), the reporter's one rating (IssueRated reaching intake's lifecycle), the rejection of a verified result
(TaskVerificationFailed, method resident), the windows, and unit ratings once per rater, unit and quarter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from hongling.evaluation.v1 import ratings_pb2 as rpb
from hongling.evaluation.v1 import ratings_pb2_grpc
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.intake.v1 import intake_pb2 as ipb
from hongling.org.v1 import org_pb2, org_pb2_grpc
from kafka import KafkaProducer
from pymongo import MongoClient

from services.common.events import CloudEvent, record_key, topic_for
from services.common.principal import Principal
from services.evaluation.ratings import domain
from tests.conftest import System, read_topic, unique, wait_for
from tests.integration.test_intake_service import Area, Stub, intake, make_area, new_issue

T = "shanggao"


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return make_area(system, T)


def ratings(system: System, role: str = "public", sub: str = "", community: str | None = None) -> Stub:
    stub = ratings_pb2_grpc.RatingServiceStub(system.channel("evaluation"))
    return Stub(stub, system, T, role, sub or f"itest-{role}", community)


def dispatch(system: System) -> Stub:
    return Stub(dispatch_pb2_grpc.DispatchServiceStub(system.channel("dispatch")), system, T, "subdistrict_admin")


def org(system: System) -> Stub:
    return Stub(org_pb2_grpc.OrgServiceStub(system.channel("org")), system, T, "subdistrict_admin")


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def publish_verified(
    producer: KafkaProducer, issue_id: str, task_id: str, community_id: str, at: datetime, attempt: int = 1
) -> str:
    """A TaskVerified as the verification area's relay publishes it; returns its verification id."""
    vid = f"v-{uuid.uuid4().hex[:12]}"
    msg = eev.TaskVerified(
        verification_id=vid,
        tenant=T,
        community_id=community_id,
        task_id=task_id,
        issue_id=issue_id,
        call_type="service",
        method="review",
        attempt=attempt,
        crew_ids=["person:itest-crew-1", "member_unit:itest-unit-1"],
        by="itest-convenor",
        verified_at=ts(at),
        votes_pass=3,
    )
    ce = CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/evaluation/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=at,
        subject=f"tasks/{task_id}/verification",
        tenant=T,
        data=msg.SerializeToString(),
    )
    producer.send(topic_for("evaluation"), key=record_key(T, vid), value=ce.data, headers=ce.headers()).get(timeout=15)
    return vid


def report(system: System, area: Area, north_m: float, title: str, grid: int = 1) -> tuple[ipb.Issue, str]:
    """An issue reported by a resident's account (its follow-up code in the answer) and its task's id. Reports
    lie 150 m apart (more than the tenant's duplicate distance), in one of the area's two grids."""
    svc = intake(system, tenant=T, role="resident", sub=f"itest-resident-{unique()}")
    issue = svc.CreateIssue(new_issue(area.point(grid, north_m=north_m), title=title))
    tasks = dispatch(system)

    def task() -> str:
        try:
            return str(tasks.GetTaskForIssue(dispatch_pb2.GetTaskForIssueRequest(issue_id=issue.id)).id)
        except grpc.RpcError:
            return ""

    return issue, wait_for(task)


def verified(
    system: System, producer: KafkaProducer, area: Area, north_m: float, days_ago: float = 0, grid: int = 1
) -> tuple[ipb.Issue, str, str]:
    issue, task_id = report(system, area, north_m, f"评单测试{north_m:.0f}", grid)
    at = datetime.now(UTC) - timedelta(days=days_ago)
    vid = publish_verified(producer, issue.id, task_id, area.community_id, at)
    public = ratings(system)
    wait_for(
        lambda: public.FollowIssue(rpb.FollowIssueRequest(issue_id=issue.id, follow_code=issue.follow_code)).verified
    )
    return issue, task_id, vid


def events_on(system: System, type_: type[Any], key: str) -> list[Any]:
    out = []
    for r in read_topic(system.settings.kafka_bootstrap, topic_for("evaluation")):
        headers = {k: v.decode() for k, v in r.headers}
        if headers.get("ce_type") == type_.DESCRIPTOR.full_name and r.key == record_key(T, key):
            msg = type_()
            msg.ParseFromString(r.value)
            out.append(msg)
    return out


def code_of(err: grpc.RpcError) -> grpc.StatusCode:
    return err.code()


# ---------------------------------------------------------------- the follow-up code


def test_the_report_answers_a_follow_code_once_and_intake_keeps_only_its_hash(
    system: System, area: Area, mongo_client: MongoClient[Any]
) -> None:
    svc = intake(system, tenant=T, role="public", sub="itest-public")
    key = unique("idem")
    issue = svc.CreateIssue(new_issue(area.point(1, north_m=-400), title="路灯不亮", idempotency_key=key))
    assert issue.follow_code and domain_code_shape(issue.follow_code)
    again = svc.CreateIssue(new_issue(area.point(1, north_m=-400), title="路灯不亮", idempotency_key=key))
    assert again.id == issue.id and again.follow_code == ""  # shown once
    assert svc.GetIssue(ipb.GetIssueRequest(id=issue.id)).follow_code == ""
    db = mongo_client[f"hl_intake_{T}"]
    stored = db["follow_codes"].find_one({"_id": issue.id})
    assert stored is not None and issue.follow_code not in str(stored)
    assert issue.follow_code not in str(db["issues"].find_one({"_id": issue.id}))
    found = svc.CheckReporter(ipb.CheckReporterRequest(issue_id=issue.id, follow_code=issue.follow_code.lower()))
    assert found.by == "code" and found.community_id == area.community_id
    for wrong in (("x" * 5 + "-") * 3 + "x" * 5, ""):
        err = svc.fails("CheckReporter", ipb.CheckReporterRequest(issue_id=issue.id, follow_code=wrong))
        assert code_of(err) == grpc.StatusCode.PERMISSION_DENIED and "查询码不正确" in (err.details() or "")
    missing = svc.fails("CheckReporter", ipb.CheckReporterRequest(issue_id="no-such", follow_code=issue.follow_code))
    assert missing.details() == err.details()  # a missing issue answers in the same words


def domain_code_shape(code: str) -> bool:
    return len(code) == 23 and code.count("-") == 3


def test_the_resident_who_reported_is_the_reporter_without_the_code(system: System, area: Area) -> None:
    sub = f"itest-resident-{unique()}"
    mine = intake(system, tenant=T, role="resident", sub=sub)
    issue = mine.CreateIssue(new_issue(area.point(1, north_m=-250), title="井盖松动"))
    assert mine.CheckReporter(ipb.CheckReporterRequest(issue_id=issue.id)).by == "resident"
    other = intake(system, tenant=T, role="resident", sub=f"itest-resident-{unique()}")
    assert code_of(other.fails("CheckReporter", ipb.CheckReporterRequest(issue_id=issue.id))) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    follows = ratings(system, "resident", sub).FollowIssue(rpb.FollowIssueRequest(issue_id=issue.id))
    assert follows.issue_id == issue.id and not follows.can_rate and "尚未验收" in follows.why_not_zh


# ---------------------------------------------------------------- rating


def test_an_unverified_issue_is_not_rated(system: System, area: Area) -> None:
    issue, _ = report(system, area, -100, "垃圾未清运")
    err = ratings(system).fails(
        "RateIssue", rpb.RateIssueRequest(issue_id=issue.id, follow_code=issue.follow_code, score=5)
    )
    assert code_of(err) == grpc.StatusCode.FAILED_PRECONDITION and "尚未验收" in (err.details() or "")


def test_a_verified_issue_is_rated_once_by_its_reporter_and_intake_hears_of_it(
    system: System, area: Area, producer: KafkaProducer
) -> None:
    issue, task_id, vid = verified(system, producer, area, 50)
    stranger = ratings(system).fails(
        "RateIssue", rpb.RateIssueRequest(issue_id=issue.id, follow_code="ABCDE-FGHJK-MNPQR-STVWX", score=1)
    )
    assert code_of(stranger) == grpc.StatusCode.PERMISSION_DENIED
    public = ratings(system)
    rated = public.RateIssue(
        rpb.RateIssueRequest(issue_id=issue.id, follow_code=issue.follow_code, score=4, comment="修得及时")
    )
    assert (rated.score, rated.task_id, rated.verification_id) == (4, task_id, vid)
    again = public.fails("RateIssue", rpb.RateIssueRequest(issue_id=issue.id, follow_code=issue.follow_code, score=5))
    assert code_of(again) == grpc.StatusCode.ALREADY_EXISTS
    reject = public.fails(
        "RejectResult", rpb.RejectResultRequest(issue_id=issue.id, follow_code=issue.follow_code, reason="不满意")
    )
    assert code_of(reject) == grpc.StatusCode.ALREADY_EXISTS
    # IssueRated, extended, reaches intake's lifecycle.
    wait_for(lambda: intake(system, tenant=T).GetIssue(ipb.GetIssueRequest(id=issue.id)).status == "rated", timeout=90)
    [event] = events_on(system, eev.IssueRated, vid)
    assert (event.issue_id, event.task_id, event.score, event.ratings) == (issue.id, task_id, 4, 1)
    assert event.community_id == area.community_id and event.rating_id == f"rating:{vid}"
    assert list(event.crew_ids) == ["person:itest-crew-1", "member_unit:itest-unit-1"]
    follows = public.FollowIssue(rpb.FollowIssueRequest(issue_id=issue.id, follow_code=issue.follow_code))
    assert follows.rating.score == 4 and not follows.can_rate and not follows.can_reject
    # The staff's list, from the read side.
    staff = ratings(system, "subdistrict_admin")
    rows = wait_for(
        lambda: [
            r
            for r in staff.ListIssueRatings(
                rpb.ListIssueRatingsRequest(community_id=area.community_id, kind="rating")
            ).rows
            if r.issue_id == issue.id
        ],
        timeout=90,
    )
    assert rows[0].score == 4 and rows[0].comment == "修得及时"


def test_racing_ratings_store_exactly_one(system: System, area: Area, producer: KafkaProducer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    issue, _, _ = verified(system, producer, area, 0, grid=2)
    public = ratings(system)

    def rate(score: int) -> str:
        try:
            public.RateIssue(rpb.RateIssueRequest(issue_id=issue.id, follow_code=issue.follow_code, score=score))
            return "ok"
        except grpc.RpcError as exc:
            return str(code_of(exc).name)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(rate, [1, 2, 3, 4]))
    assert outcomes.count("ok") == 1 and outcomes.count("ALREADY_EXISTS") == 3


# ---------------------------------------------------------------- rejecting


def test_the_reporter_rejects_a_verified_result_once_and_it_is_an_event(
    system: System, area: Area, producer: KafkaProducer
) -> None:
    issue, task_id, vid = verified(system, producer, area, 350)
    public = ratings(system)
    done = public.RejectResult(
        rpb.RejectResultRequest(issue_id=issue.id, follow_code=issue.follow_code, reason="灯还是不亮，电话13812345678")
    )
    assert done.rejection_id == f"resident:{vid}" and done.attempt == 1
    again = public.fails(
        "RejectResult", rpb.RejectResultRequest(issue_id=issue.id, follow_code=issue.follow_code, reason="再退")
    )
    assert code_of(again) == grpc.StatusCode.ALREADY_EXISTS
    rate = public.fails("RateIssue", rpb.RateIssueRequest(issue_id=issue.id, follow_code=issue.follow_code, score=1))
    assert code_of(rate) == grpc.StatusCode.ALREADY_EXISTS
    [event] = events_on(system, eev.TaskVerificationFailed, vid)
    assert (event.method, event.attempt, event.task_id, event.issue_id) == ("resident", 1, task_id, issue.id)
    assert event.verification_id == f"resident:{vid}" and list(event.crew_ids) == [
        "person:itest-crew-1",
        "member_unit:itest-unit-1",
    ]
    assert "13812345678" not in event.reason and "灯还是不亮" in event.reason
    # The area hears its own verdict back: the verification stands rejected.
    follows = wait_for(
        lambda: (
            (f := public.FollowIssue(rpb.FollowIssueRequest(issue_id=issue.id, follow_code=issue.follow_code))).verified
            is False
            and f
        )
    )
    assert follows.rejection.reason.startswith("灯还是不亮") and not follows.can_rate
    # Reopened, worked again and verified at the second attempt: the reporter may rate (or reject) again.
    second = publish_verified(producer, issue.id, task_id, area.community_id, datetime.now(UTC), attempt=2)
    again_verified = wait_for(
        lambda: (
            (f := public.FollowIssue(rpb.FollowIssueRequest(issue_id=issue.id, follow_code=issue.follow_code))).can_rate
            and f
        )
    )
    assert again_verified.attempt == 2 and again_verified.can_reject
    assert not again_verified.HasField("rejection")  # the first verification's rejection no longer stands
    rated = public.RateIssue(rpb.RateIssueRequest(issue_id=issue.id, follow_code=issue.follow_code, score=3))
    assert rated.verification_id == second


def test_the_windows_after_verification(system: System, area: Area, producer: KafkaProducer) -> None:
    public = ratings(system)
    late, _, _ = verified(system, producer, area, -300, days_ago=8, grid=2)  # past 7 days: rating only
    f = public.FollowIssue(rpb.FollowIssueRequest(issue_id=late.id, follow_code=late.follow_code))
    assert f.can_rate and not f.can_reject
    err = public.fails(
        "RejectResult", rpb.RejectResultRequest(issue_id=late.id, follow_code=late.follow_code, reason="晚了")
    )
    assert code_of(err) == grpc.StatusCode.FAILED_PRECONDITION and "退回期限已过" in (err.details() or "")
    old, _, _ = verified(system, producer, area, -150, days_ago=31, grid=2)  # past 30 days: neither
    err = public.fails("RateIssue", rpb.RateIssueRequest(issue_id=old.id, follow_code=old.follow_code, score=3))
    assert code_of(err) == grpc.StatusCode.FAILED_PRECONDITION and "评价期限已过" in (err.details() or "")


# ---------------------------------------------------------------- unit ratings


def test_unit_ratings_once_per_rater_unit_and_quarter(system: System, area: Area) -> None:
    o = org(system)
    unit = o.CreateMemberUnit(
        org_pb2.MemberUnit(
            community_id=area.community_id,
            name_zh=f"红色物业{unique()}",
            kind="property_company",
            joined_on="2024-05-01",
        )
    )
    rep = o.CreatePerson(
        org_pb2.Person(community_id=area.community_id, name_zh="居民代表甲", roles=["resident_representative"])
    )
    plain = o.CreatePerson(org_pb2.Person(community_id=area.community_id, name_zh="党员乙", roles=["party_member"]))
    worker = ratings(system, "community_worker", community=area.community_id)
    done = worker.RateUnit(rpb.RateUnitRequest(unit_id=unit.id, score=5, rater_person_id=rep.id, comment="服务好"))
    assert done.rater_kind == domain.RATER_REPRESENTATIVE and done.quarter == domain.quarter_of(datetime.now(UTC))
    twice = worker.fails("RateUnit", rpb.RateUnitRequest(unit_id=unit.id, score=3, rater_person_id=rep.id))
    assert code_of(twice) == grpc.StatusCode.ALREADY_EXISTS
    not_rep = worker.fails("RateUnit", rpb.RateUnitRequest(unit_id=unit.id, score=3, rater_person_id=plain.id))
    assert code_of(not_rep) == grpc.StatusCode.INVALID_ARGUMENT
    elsewhere = ratings(system, "community_worker", community="another-community").fails(
        "RateUnit", rpb.RateUnitRequest(unit_id=unit.id, score=3, rater_person_id=rep.id)
    )
    assert code_of(elsewhere) == grpc.StatusCode.PERMISSION_DENIED
    # An alliance member rates as its own unit, once; a unit of another community is refused.
    other = o.CreateMemberUnit(
        org_pb2.MemberUnit(
            community_id=area.community_id, name_zh=f"业委会{unique()}", kind="owners_committee", joined_on="2024-05-01"
        )
    )
    member = ratings(system, "member")
    member.principal = Principal(sub="itest-member", role="member", tenants=(T,), responder=("member_unit", other.id))
    by_member = member.RateUnit(rpb.RateUnitRequest(unit_id=unit.id, score=4))
    assert by_member.rater == f"member_unit:{other.id}" and by_member.rater_kind == domain.RATER_MEMBER
    assert code_of(member.fails("RateUnit", rpb.RateUnitRequest(unit_id=unit.id, score=4))) == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    assert code_of(member.fails("RateUnit", rpb.RateUnitRequest(unit_id=other.id, score=5))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )  # not itself
    # Listed from the read side.
    staff = ratings(system, "subdistrict_admin")
    listed = wait_for(
        lambda: len(resp := staff.ListUnitRatings(rpb.ListUnitRatingsRequest(unit_id=unit.id)).ratings) == 2 and resp,
        timeout=90,
    )
    assert {r.rater_kind for r in listed} == {domain.RATER_REPRESENTATIVE, domain.RATER_MEMBER}
