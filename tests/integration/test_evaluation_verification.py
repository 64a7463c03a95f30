"""验单 over real gRPC against the real stack (FerretDB, Kafka, intake, dispatch, org): review rounds, on-site
checks, the tenant's rules, the queue, and dispatch applying the verdicts (once)."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.dispatch.v1 import dispatch_pb2_grpc
from hongling.evaluation.v1 import verification_pb2 as pb
from hongling.evaluation.v1 import verification_pb2_grpc
from hongling.events.v1 import evaluation_events_pb2 as vev
from hongling.intake.v1 import intake_pb2 as ipb
from hongling.org.v1 import org_pb2, org_pb2_grpc
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from services.common.events import topic_for
from tests.builders import refused_by_grpc
from tests.conftest import System, read_topic, unique, wait_for
from tests.integration.test_intake_service import Area, Stub, field_of, intake, make_area

T = "qiujiadian"
_spots = itertools.count()
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200


def verification(system: System, role: str = "subdistrict_admin", sub: str = "", community: str | None = None) -> Stub:
    stub = verification_pb2_grpc.VerificationServiceStub(system.channel("evaluation"))
    return Stub(stub, system, T, role, sub or "test-convenor", community)


def dispatch(system: System) -> Stub:
    return Stub(dispatch_pb2_grpc.DispatchServiceStub(system.channel("dispatch")), system, T, "subdistrict_admin")


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return make_area(system, T)


@pytest.fixture(scope="module")
def helper(system: System, area: Area) -> str:
    org = Stub(org_pb2_grpc.OrgServiceStub(system.channel("org")), system, T, "subdistrict_admin")
    found = org.CreatePerson(
        org_pb2.Person(community_id=area.community_id, grid_id=area.g1, name_zh="志愿者甲", roles=["volunteer"])
    )
    return str(found.id)


def done_task(system: System, area: Area, helper: str, **issue: Any) -> dpb.Task:
    """A task of a new issue, claimed by the helper, started and done."""
    n = next(_spots)
    fields: dict[str, Any] = {
        "title": "楼道灯不亮",
        "description": "3号楼2单元楼道灯坏了",
        "channel": "resident_report",
        "category": "property_repair",
        "location": area.point(1, north_m=(n % 6) * 150 - 400, east_m=(n // 6 % 6) * 150 - 400),
    }
    fields.update(issue)
    created = intake(system, T).CreateIssue(ipb.CreateIssueRequest(**fields))
    d = dispatch(system)

    def task() -> dpb.Task | None:
        try:
            return d.GetTaskForIssue(dpb.GetTaskForIssueRequest(issue_id=created.id))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return None

    t = wait_for(task)
    d.ClaimTask(dpb.ClaimTaskRequest(task_id=t.id, claimant=dpb.Responder(kind="person", id=helper)))
    d.TransitionTask(dpb.TransitionTaskRequest(task_id=t.id, action="start"))
    return d.TransitionTask(dpb.TransitionTaskRequest(task_id=t.id, action="done"))


def task_now(system: System, task_id: str) -> dpb.Task:
    return dispatch(system).GetTask(dpb.GetTaskRequest(id=task_id))


def status_becomes(system: System, task_id: str, status: str) -> dpb.Task:
    return wait_for(lambda: (t := task_now(system, task_id)).status == status and t, timeout=120)


def verdicts(system: System, task_id: str) -> list[Any]:
    """The verdict events of a task on hongling.evaluation.v1 (keyed by the round or check that gave them)."""
    return [m for _, m in verdict_records(system, task_id)]


def verdict_records(system: System, task_id: str) -> list[tuple[Any, Any]]:
    out = []
    classes = {c.DESCRIPTOR.full_name: c for c in (vev.TaskVerified, vev.TaskVerificationFailed)}
    for r in read_topic(system.settings.kafka_bootstrap, topic_for("evaluation")):
        cls = classes.get(dict(r.headers)["ce_type"].decode())
        if cls is not None and (m := cls.FromString(r.value)).task_id == task_id and m.tenant == T:
            out.append((r, m))
    return out


def reviewers(*kinds: str) -> list[pb.ReviewerIn]:
    return [pb.ReviewerIn(id=f"rv-{n}-{unique()[-4:]}", kind=k, name_zh=f"评议人{n}") for n, k in enumerate(kinds)]


def vote(v: Stub, round_id: str, task_id: str, reviewer: str, passed: bool, reason: str = "") -> pb.ReviewRound:
    req = pb.CastVoteRequest(round_id=round_id, task_id=task_id, reviewer_id=reviewer, reason=reason)
    setattr(req, "pass", passed)
    return v.CastVote(req)


def check(task_id: str, lat: float, lon: float, passed: bool, reason: str = "", **kw: Any) -> pb.RecordCheckRequest:
    req = pb.RecordCheckRequest(task_id=task_id, lat=lat, lon=lon, reason=reason, **kw)
    setattr(req, "pass", passed)
    return req


# ---------------------------------------------------------------- review rounds


def test_a_closed_round_gives_each_task_with_a_quorum_its_verdict_and_dispatch_applies_it(
    system: System, area: Area, helper: str
) -> None:
    a, b = done_task(system, area, helper), done_task(system, area, helper)
    v = verification(system)
    people = reviewers("party_committee", "resident_representative", "alliance_member")
    r = v.CreateRound(
        pb.CreateRoundRequest(
            community_id=area.community_id, title="十二月集中评议", task_ids=[a.id, b.id], reviewers=people
        )
    )
    assert (r.status, r.quorum, r.decision) == ("open", 3, "majority")
    assert [x.kind_zh for x in r.reviewers] == ["社区党委", "居民代表", "联盟成员"]
    vote(v, r.id, a.id, people[0].id, True)
    vote(v, r.id, a.id, people[1].id, True)
    vote(v, r.id, a.id, people[2].id, False, "灯罩未装回")
    vote(v, r.id, b.id, people[0].id, True)
    vote(v, r.id, b.id, people[1].id, True)  # b: 2 votes, below the quorum of 3
    err = v.fails("CastVote", _vote_req(r.id, a.id, people[0].id, False, "改主意"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "已对此任务投票" in (err.details() or "")
    assert vote(v, r.id, a.id, people[0].id, True).version == r.version  # the same vote again: a retry
    closed = v.CloseRound(pb.CloseRoundRequest(id=r.id))
    got = {t.task_id: t for t in closed.tasks}
    assert (got[a.id].verdict, got[a.id].votes_pass, got[a.id].votes_fail) == ("passed", 2, 1)
    assert got[a.id].reasons == ["灯罩未装回"] and got[a.id].verification_id == f"{a.id}:1"
    assert (got[b.id].verdict, got[b.id].verdict_zh) == ("no_quorum", "未达法定票数")
    assert len(closed.votes) == 5 and closed.status == "closed"
    status_becomes(system, a.id, "verified")
    [event] = wait_for(lambda: verdicts(system, a.id))
    assert isinstance(event, vev.TaskVerified)
    assert (event.method, event.round_id, event.attempt, event.votes_pass, event.votes_fail) == (
        "review",
        r.id,
        1,
        2,
        1,
    )
    assert event.community_id == area.community_id and f"person:{helper}" in event.crew_ids
    # No vote after the close; the task without a verdict stays done, in the queue.
    err = v.fails("CastVote", _vote_req(r.id, b.id, people[2].id, True))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and field_of(err) == "round_id"
    assert task_now(system, b.id).status == "done"
    assert v.CloseRound(pb.CloseRoundRequest(id=r.id)).version == closed.version  # closing again: nothing


def _vote_req(round_id: str, task_id: str, reviewer: str, passed: bool, reason: str = "") -> pb.CastVoteRequest:
    req = pb.CastVoteRequest(round_id=round_id, task_id=task_id, reviewer_id=reviewer, reason=reason)
    setattr(req, "pass", passed)
    return req


def test_concurrent_votes_of_one_reviewer_on_one_task_count_once(system: System, area: Area, helper: str) -> None:
    t = done_task(system, area, helper)
    v = verification(system)
    people = reviewers("party_committee")
    r = v.CreateRound(
        pb.CreateRoundRequest(
            community_id=area.community_id, title="并发投票", task_ids=[t.id], reviewers=people, quorum=1
        )
    )
    reqs = [_vote_req(r.id, t.id, people[0].id, n % 2 == 0, "" if n % 2 == 0 else "不通过") for n in range(6)]

    def cast(req: pb.CastVoteRequest) -> str:
        try:
            v.CastVote(req)
            return "ok"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(cast, reqs))
    assert set(outcomes) <= {"ok", "FAILED_PRECONDITION"} and "FAILED_PRECONDITION" in outcomes
    got = v.GetRound(pb.GetRoundRequest(id=r.id))
    assert len(got.votes) == 1 and got.tasks[0].votes_pass + got.tasks[0].votes_fail == 1


def test_a_round_takes_only_done_tasks_of_its_community_whose_rule_is_review(
    system: System, area: Area, helper: str
) -> None:
    v = verification(system)
    emergency = done_task(system, area, helper, title="楼道里有煤气味", hazards=["gas"])
    assert emergency.call_type == "emergency"
    err = v.fails(
        "CreateRound",
        pb.CreateRoundRequest(
            community_id=area.community_id,
            title="评议",
            task_ids=[emergency.id],
            reviewers=reviewers("party_committee"),
        ),
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "现场核验" in (err.details() or "")
    d = dispatch(system)
    fresh = intake(system, T).CreateIssue(
        ipb.CreateIssueRequest(
            title="路灯不亮", description="小区门口路灯", channel="resident_report", category="property_repair",
            location=area.point(2),
        )
    )  # fmt: skip
    open_task = wait_for(lambda: _task_for(d, fresh.id))
    err = v.fails(
        "CreateRound",
        pb.CreateRoundRequest(
            community_id=area.community_id,
            title="评议",
            task_ids=[open_task.id],
            reviewers=reviewers("party_committee"),
        ),
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and field_of(err) == "task_ids[0]"


def _task_for(d: Stub, issue_id: str) -> dpb.Task | None:
    try:
        return d.GetTaskForIssue(dpb.GetTaskForIssueRequest(issue_id=issue_id))
    except grpc.RpcError:
        return None


# ---------------------------------------------------------------- on-site checks


def test_a_failed_check_far_from_the_issue_reopens_the_task_and_the_next_is_attempt_two(
    system: System, area: Area, helper: str
) -> None:
    t = done_task(system, area, helper, title="楼道里有煤气味", hazards=["gas"])
    assert t.call_type == "emergency"
    issue = intake(system, T).GetIssue(ipb.GetIssueRequest(id=t.issue_id))
    lat, lon = issue.location.lat, issue.location.lon
    v = verification(system)
    far = v.RecordCheck(
        check(
            t.id, lat + 0.005, lon, False, "阀门仍有异味", notes="现场复查",
            photos=[pb.PhotoUpload(filename="现场.jpg", content_type="image/jpeg", content=JPEG)],
        )
    )  # fmt: skip
    assert (
        far.place_flagged and far.distance_m > 500 and far.distance_limit_m == 200 and "超过200米" in far.place_note_zh
    )
    assert (far.verdict, far.attempt, far.verification_id) == ("failed", 1, f"{t.id}:1")
    assert [p.content_type for p in far.photos] == ["image/jpeg"]
    photo = v.GetCheckPhoto(pb.GetCheckPhotoRequest(check_id=far.id, photo_id=far.photos[0].id))
    assert photo.content == JPEG
    reopened = status_becomes(system, t.id, "reopened")
    assert [h.action for h in reopened.history][-2:] == ["reject", "reopen"]
    [failed] = wait_for(lambda: verdicts(system, t.id))
    assert isinstance(failed, vev.TaskVerificationFailed)
    assert (failed.method, failed.place_flagged, failed.reason, failed.check_id) == (
        "onsite",
        True,
        "阀门仍有异味",
        far.id,
    )
    # The helper works again; the next check is the second verification.
    d = dispatch(system)
    d.TransitionTask(dpb.TransitionTaskRequest(task_id=t.id, action="start"))
    d.TransitionTask(dpb.TransitionTaskRequest(task_id=t.id, action="done"))
    near = v.RecordCheck(check(t.id, lat + 0.0005, lon, True))
    assert not near.place_flagged and 0 < near.distance_m < 200 and near.attempt == 2
    status_becomes(system, t.id, "verified")
    # Two verdicts, each keyed by its own check: they may sit on different partitions, read in either order.
    found = wait_for(lambda: len(e := verdicts(system, t.id)) == 2 and sorted(e, key=lambda m: m.attempt))
    assert [type(m) for m in found] == [vev.TaskVerificationFailed, vev.TaskVerified]
    second = found[1]
    assert second.attempt == 2 and not second.place_flagged


def test_a_resent_verdict_changes_nothing(system: System, area: Area, helper: str) -> None:
    t = done_task(system, area, helper, title="楼道里有煤气味", hazards=["gas"])
    issue = intake(system, T).GetIssue(ipb.GetIssueRequest(id=t.issue_id))
    verification(system).RecordCheck(check(t.id, issue.location.lat, issue.location.lon, False, "未修好"))
    reopened = status_becomes(system, t.id, "reopened")
    originals = [r for r, _ in wait_for(lambda: verdict_records(system, t.id))]
    assert len(originals) == 1
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    headers = [(k, f"resent-{unique()}".encode() if k == "ce_id" else v) for k, v in originals[0].headers]
    producer.send(topic_for("evaluation"), key=originals[0].key, value=originals[0].value, headers=headers)
    producer.flush(10)
    producer.close()
    # Once dispatch's consumer group has committed past the resent record, it has been handled.
    wait_for(lambda: _group_caught_up(system), timeout=120)
    again = task_now(system, t.id)
    assert again.status == "reopened" and again.version == reopened.version


def _group_caught_up(system: System) -> bool:
    """Dispatch's consumer group has committed every record of the evaluation topic."""
    admin = KafkaAdminClient(bootstrap_servers=system.settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=system.settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets({"dispatch": None}).get("dispatch", {})
        topic = topic_for("evaluation")
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(parts)
        done = {tp: committed[tp].offset if committed.get(tp) is not None else 0 for tp in parts}
        return bool(parts) and all(done[tp] >= ends[tp] for tp in parts)
    finally:
        admin.close()
        consumer.close()


def test_two_checks_at_once_give_one_verdict(system: System, area: Area, helper: str) -> None:
    t = done_task(system, area, helper, title="楼道里有煤气味", hazards=["gas"])
    v = verification(system)

    def record(n: int) -> str:
        try:
            v.RecordCheck(check(t.id, 36.2, 117.1, n % 2 == 0, "" if n % 2 == 0 else "不合格"))
            return "ok"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(record, range(4)))
    assert outcomes.count("ok") == 1 and set(outcomes) == {"ok", "FAILED_PRECONDITION"}
    wait_for(lambda: task_now(system, t.id).status in ("verified", "reopened"), timeout=120)
    assert len(wait_for(lambda: verdicts(system, t.id))) == 1


def test_a_check_of_a_task_not_done_is_refused_and_so_is_a_bare_verify(system: System, area: Area, helper: str) -> None:
    t = done_task(system, area, helper, title="楼道里有煤气味", hazards=["gas"])
    d = dispatch(system)
    for action in ("verify", "reject"):
        err = d.fails("TransitionTask", dpb.TransitionTaskRequest(task_id=t.id, action=action, reason="x"))
        assert refused_by_grpc(err) and field_of(err) == "action"
    v = verification(system)
    v.RecordCheck(check(t.id, 36.2, 117.1, True))
    status_becomes(system, t.id, "verified")
    err = v.fails("RecordCheck", check(t.id, 36.2, 117.1, True))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "尚未办结" in (err.details() or "")
    err = v.fails("RecordCheck", check(t.id, 0, 0, True))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "lat"


def test_a_service_task_is_not_checked_on_site_under_the_default_rules(system: System, area: Area, helper: str) -> None:
    t = done_task(system, area, helper)
    assert t.call_type == "service"
    err = verification(system).fails("RecordCheck", check(t.id, 36.2, 117.1, True))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "集中评议" in (err.details() or "")


# ---------------------------------------------------------------- scope, queue, lists, rules


def test_a_community_worker_sees_its_own_communitys_rounds_only(system: System, area: Area, helper: str) -> None:
    t = done_task(system, area, helper)
    r = verification(system).CreateRound(
        pb.CreateRoundRequest(
            community_id=area.community_id,
            title="本社区评议",
            task_ids=[t.id],
            reviewers=reviewers("party_committee"),
            quorum=1,
        )
    )
    other = verification(system, "community_worker", community="another-community")
    assert other.fails("GetRound", pb.GetRoundRequest(id=r.id)).code() == grpc.StatusCode.NOT_FOUND
    err = other.fails("ListQueue", pb.ListQueueRequest(community_id=area.community_id))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    own = verification(system, "community_worker", sub="another-worker", community=area.community_id)
    assert own.GetRound(pb.GetRoundRequest(id=r.id)).id == r.id
    err = own.fails("CloseRound", pb.CloseRoundRequest(id=r.id))  # not its convenor
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_queue_lists_the_communitys_done_tasks_newest_first_in_pages(
    system: System, area: Area, helper: str
) -> None:
    tasks = [done_task(system, area, helper) for _ in range(3)]
    v = verification(system)

    def listed() -> list[str] | None:
        found: list[str] = []
        token = ""
        while True:
            page = v.ListQueue(pb.ListQueueRequest(community_id=area.community_id, page_size=2, page_token=token))
            found += [i.task_id for i in page.items]
            token = page.next_page_token
            if not token:
                break
        return found if {t.id for t in tasks} <= set(found) else None

    found = wait_for(listed, timeout=120)
    item = next(i for i in v.ListQueue(pb.ListQueueRequest(community_id=area.community_id, page_size=100)).items)
    assert item.method in ("review", "onsite") and item.attempt >= 1 and item.community_id == area.community_id
    assert len(found) == len(set(found))


def test_rounds_and_checks_are_listed_from_the_read_model(system: System, area: Area, helper: str) -> None:
    t = done_task(system, area, helper)
    v = verification(system)
    r = v.CreateRound(
        pb.CreateRoundRequest(
            community_id=area.community_id,
            title="列表评议",
            task_ids=[t.id],
            reviewers=reviewers("party_committee"),
            quorum=1,
        )
    )
    rows = wait_for(
        lambda: [
            x
            for x in v.ListRounds(pb.ListRoundsRequest(community_id=area.community_id, status="open")).rounds
            if x.id == r.id
        ]
    )
    assert rows[0].tasks == 1 and rows[0].status_zh == "评议中"
    g = done_task(system, area, helper, title="楼道里有煤气味", hazards=["gas"])
    c = v.RecordCheck(check(g.id, 36.2, 117.1, True))
    found = wait_for(lambda: v.ListChecks(pb.ListChecksRequest(task_id=g.id)).checks)
    assert found[0].id == c.id and getattr(found[0], "pass")


def test_the_rules_are_the_defaults_until_set_and_a_stale_version_is_refused(system: System) -> None:
    admin = Stub(
        verification_pb2_grpc.VerificationServiceStub(system.channel("evaluation")), system, "shanggao",
        "subdistrict_admin",
    )  # fmt: skip
    got = admin.GetVerificationRules(pb.GetVerificationRulesRequest())
    methods = {r.call_type: r.method for r in got.rules}
    assert methods == {"service": "review", "tackling": "review", "emergency": "onsite"} or got.version > 0
    wanted = pb.VerificationRules(version=got.version)
    for r in got.rules:
        wanted.rules.append(
            pb.CallTypeRule(
                call_type=r.call_type, method=r.method, quorum=r.quorum, decision=r.decision, distance_m=300
            )
        )
    saved = admin.PutVerificationRules(wanted)
    assert saved.version == got.version + 1 and {r.distance_m for r in saved.rules} == {300}
    assert admin.fails("PutVerificationRules", wanted).code() == grpc.StatusCode.ABORTED  # stale: the version read
    back = pb.VerificationRules(version=saved.version)
    for r in got.rules:
        back.rules.append(
            pb.CallTypeRule(
                call_type=r.call_type, method=r.method, quorum=r.quorum, decision=r.decision, distance_m=200
            )
        )
    admin.PutVerificationRules(back)
    worker = Stub(
        verification_pb2_grpc.VerificationServiceStub(system.channel("evaluation")), system, "shanggao",
        "community_worker",
        community="some-community",
    )  # fmt: skip
    assert worker.fails("PutVerificationRules", back).code() == grpc.StatusCode.PERMISSION_DENIED
