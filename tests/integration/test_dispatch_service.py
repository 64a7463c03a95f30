"""The dispatch service over real gRPC with the real org and intake services, FerretDB and Kafka: calls raised
by classified issues, report-ins, claims (with a real race), precise assignment, the task lifecycle, the
clocks (durable timers), manual calls, the whistle board and per-tenant rules.

Time. Deadlines are minutes to days away; to see a deadline pass, a test moves it (and its timer) into the
past in the database ("travel"), then waits for the running service's timer worker to fire it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import requests
from google.protobuf.message import Message
from hongling.dispatch.v1 import dispatch_pb2 as pb
from hongling.dispatch.v1 import dispatch_pb2_grpc
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.intake.v1 import intake_pb2 as ipb
from hongling.intake.v1 import intake_pb2_grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc
from kafka import KafkaProducer
from pymongo import MongoClient

from services.common.events import CloudEvent, topic_for
from services.common.principal import Principal
from services.dispatch.domain import task_id_for_issue, whistle_id_for_issue
from tests.builders import refused_by_grpc, send_back, verify
from tests.conftest import System, read_topic, unique, wait_for
from tests.integration.test_intake_service import Area, Stub, field_of, make_area

T = "xujialou"
RULES_TENANT = "daimiao"
_spots = itertools.count()


def dispatch(system: System, role: str = "subdistrict_admin", tenant: str = T, sub: str = "") -> Stub:
    return Stub(dispatch_pb2_grpc.DispatchServiceStub(system.channel("dispatch")), system, tenant, role, sub)


def intake(system: System, tenant: str = T) -> Stub:
    return Stub(intake_pb2_grpc.IntakeServiceStub(system.channel("intake")), system, tenant, "subdistrict_admin")


@dataclass(frozen=True)
class Scene:
    area: Area
    unit_g1: str  # serves grid 1
    unit_g2: str  # serves grid 2 only
    unit_all: str  # serves the whole community
    fitter: str  # a person with the skill property repairs need, in grid 1
    outsider: str  # a person with no matching skill


@pytest.fixture(scope="module")
def scene(system: System) -> Scene:
    area = make_area(system, T)
    org = Stub(org_pb2_grpc.OrgServiceStub(system.channel("org")), system, T, "subdistrict_admin")
    c = area.community_id

    def unit(name: str, kind: str, grids: list[str]) -> str:
        return str(
            org.CreateMemberUnit(
                org_pb2.MemberUnit(
                    community_id=c,
                    name_zh=f"{name}{unique()[-4:]}",
                    kind=kind,
                    serves_grid_ids=grids,
                    joined_on="2024-05-01",
                )
            ).id
        )

    u1 = unit("一网格物业", "property_company", [area.g1])
    u2 = unit("二网格业委会", "owners_committee", [area.g2])
    u3 = unit("驻地单位", "resident_unit", [])
    fitter = org.CreatePerson(org_pb2.Person(community_id=c, grid_id=area.g1, name_zh="维修能手", roles=["volunteer"]))
    org.CreateTalentEntry(org_pb2.TalentEntry(person_id=fitter.id, skill="房屋维修", level=5))
    outsider = org.CreatePerson(
        org_pb2.Person(community_id=c, grid_id=area.g2, name_zh="热心居民", roles=["volunteer"])
    )
    return Scene(area, u1, u2, u3, fitter.id, outsider.id)


def report(system: System, scene: Scene, *, grid: int = 1, **kw: Any) -> ipb.Issue:
    """A new issue (not a duplicate of another: each at its own spot, 150 m apart)."""
    n = next(_spots)
    fields: dict[str, Any] = {
        "title": "楼道墙皮脱落",
        "description": "3号楼2单元楼道墙皮大面积脱落",
        "channel": "resident_report",
        "category": "property_repair",
        "location": scene.area.point(grid, north_m=(n % 6) * 150 - 400, east_m=(n // 6 % 6) * 150 - 400),
    }
    fields.update(kw)
    return intake(system).CreateIssue(ipb.CreateIssueRequest(**fields))


def task_of(system: System, issue_id: str, tenant: str = T) -> pb.Task:
    """The issue's task, once dispatch has opened it and blown its call."""
    d = dispatch(system, tenant=tenant)

    def found() -> pb.Task | None:
        try:
            task = d.GetTaskForIssue(pb.GetTaskForIssueRequest(issue_id=issue_id))
            d.GetWhistle(pb.GetWhistleRequest(id=task.whistle_id))
            return task
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return None

    return wait_for(found)


def whistle(system: System, whistle_id: str) -> pb.Whistle:
    return dispatch(system).GetWhistle(pb.GetWhistleRequest(id=whistle_id))


def at(stamp: Any) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def at_(stored: datetime) -> datetime:
    """A time read from the database, in UTC."""
    return stored if stored.tzinfo else stored.replace(tzinfo=UTC)


def events(system: System, aggregate_id: str, tenant: str = T) -> list[tuple[str, Message]]:
    """(type, payload) of a task's or call's events on hongling.dispatch.v1, in order."""
    classes = {
        c.DESCRIPTOR.full_name: c
        for c in (
            dev.TaskCreated,
            dev.WhistleBlown,
            dev.WhistleUpgraded,
            dev.TaskAssigned,
            dev.TaskStatusChanged,
            dev.UnitReportedIn,
            dev.TaskClaimed,
            dev.DeadlineMissed,
            dev.DeadlineReminder,
            dev.Escalated,
        )
    }
    out = []
    for r in read_topic(system.settings.kafka_bootstrap, topic_for("dispatch")):
        if r.key == f"{tenant}:{aggregate_id}".encode():
            ce = CloudEvent.from_record(r.headers, r.value)
            if ce.type in classes:
                out.append((ce.type.rsplit(".", 1)[-1], ce.decode(classes[ce.type])))
    return out


def kinds_of(evs: list[tuple[str, Message]]) -> list[str]:
    return [k for k, _ in evs]


def timers(mongo: MongoClient[Any], tenant: str = T) -> Any:
    return mongo[f"hl_dispatch_{tenant}"]["timers"]


def travel(mongo: MongoClient[Any], collection: str, doc_id: str, field: str, timer_key: str) -> None:
    """Let a deadline pass: the document's deadline and its timer move a second into the past."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    db = mongo[f"hl_dispatch_{T}"]
    db[collection].update_one({"_id": doc_id}, {"$set": {field: past}})
    db["timers"].update_one({"_id": timer_key}, {"$set": {"due_at": past, "next_at": past}})


def who(kind: str, rid: str) -> pb.Responder:
    return pb.Responder(kind=kind, id=rid)


# ---------------------------------------------------------------- calls raised by classified issues


def test_a_routine_issue_blows_a_service_call_to_the_areas_units_and_the_best_fits(
    system: System, scene: Scene, mongo_client: MongoClient[Any]
) -> None:
    issue = report(system, scene)
    assert issue.urgency == "routine"
    task = task_of(system, issue.id)
    assert task.id == task_id_for_issue(issue.id) and task.whistle_id == whistle_id_for_issue(issue.id)
    assert (task.status, task.status_zh, task.call_type, task.title) == ("open", "待认领", "service", issue.title)
    assert (task.community_id, task.grid_id) == (scene.area.community_id, scene.area.g1)
    assert (task.lead_places, task.assistant_places, task.places_left) == (1, 1, 2)
    assert "房屋维修" in task.needs.skills
    assert list(task.allowed_actions) == ["assign", "claim", "cancel"]
    assert at(task.complete_by) - at(task.created_at) == timedelta(days=15)

    w = whistle(system, task.whistle_id)
    assert (w.call_type, w.call_type_zh, w.status, w.manual, w.blown_by) == (
        "service",
        "服务集结号",
        "open",
        False,
        "service:dispatch",
    )
    assert at(w.report_in_by) - at(w.blown_at) == timedelta(hours=72)
    assert list(w.issue_ids) == [issue.id] and [t.task_id for t in w.tasks] == [task.id]
    assert w.places_left == 2 and not w.report_in_closed
    sources = {(t.kind, t.id): t.source for t in w.targets}
    assert sources[("member_unit", scene.unit_g1)] == "serves_area"
    assert sources[("member_unit", scene.unit_all)] == "serves_area"
    assert ("member_unit", scene.unit_g2) not in sources  # serves another grid
    assert sources[("person", scene.fitter)] == "matching"
    fit = next(t for t in w.targets if t.id == scene.fitter)
    assert fit.name_zh == "维修能手" and any("房屋维修" in r for r in fit.reasons)

    # Its clocks are durable timers, one per call and per task, each at its next clock point: the reminders
    # before the report-in and the completion deadlines.
    found = {d["_id"]: d for d in timers(mongo_client).find({"_id": {"$in": [f"w:{w.id}", f"t:{task.id}"]}})}
    assert found[f"w:{w.id}"]["kind"] == "dispatch.report_in_reminder"
    assert at_(found[f"w:{w.id}"]["due_at"]) == at(w.report_in_by) - timedelta(hours=12)
    assert found[f"t:{task.id}"]["kind"] == "dispatch.completion_reminder"
    assert at_(found[f"t:{task.id}"]["due_at"]) == at(task.complete_by) - timedelta(hours=48)

    blown = wait_for(lambda: [m for k, m in events(system, w.id) if k == "WhistleBlown"])
    assert len(blown) == 1
    assert blown[0].call_type == "service" and list(blown[0].task_ids) == [task.id]  # type: ignore[attr-defined]
    assert scene.unit_g1 in blown[0].target_ids  # type: ignore[attr-defined]
    # The resident sees the call in the issue's history.
    get = intake(system).GetIssue
    wait_for(lambda: get(ipb.GetIssueRequest(id=issue.id)).status == "whistle_blown")


def test_an_urgent_issue_blows_an_emergency_call_to_every_unit_of_the_community(system: System, scene: Scene) -> None:
    issue = report(system, scene, title="楼道里有煤气味", hazards=["gas"])
    assert issue.urgency == "urgent"
    task = task_of(system, issue.id)
    assert (task.call_type, task.assistant_places) == ("emergency", 3)
    w = whistle(system, task.whistle_id)
    assert w.call_type_zh == "紧急集结号"
    assert at(w.report_in_by) - at(w.blown_at) == timedelta(minutes=30)
    assert at(w.complete_by) - at(w.blown_at) == timedelta(hours=24)
    ids = {t.id for t in w.targets}
    assert {scene.unit_g1, scene.unit_g2, scene.unit_all} <= ids


def test_a_duplicate_gets_no_task_of_its_own_and_shows_its_originals(
    system: System, scene: Scene, mongo_client: MongoClient[Any]
) -> None:
    first = report(system, scene)
    original = task_of(system, first.id)
    dup = intake(system).CreateIssue(
        ipb.CreateIssueRequest(
            title="楼道墙皮掉了",
            description="同一个楼道",
            channel="online",
            category="property_repair",
            location=first.location,
        )
    )
    assert dup.duplicate_of == first.id
    shown = task_of(system, dup.id)
    assert shown.id == original.id and shown.issue_id == first.id
    db = mongo_client[f"hl_dispatch_{T}"]
    assert db["tasks"].count_documents({"issue_id": dup.id}) == 0
    assert db["whistles"].count_documents({"_id": whistle_id_for_issue(dup.id)}) == 0


def test_a_more_urgent_class_upgrades_the_open_call(system: System, scene: Scene) -> None:
    issue = report(system, scene)
    task = task_of(system, issue.id)
    before = whistle(system, task.whistle_id)
    get = intake(system).GetIssue
    blown = wait_for(lambda: (i := get(ipb.GetIssueRequest(id=issue.id))).status == "whistle_blown" and i)
    intake(system).ReclassifyIssue(
        ipb.ReclassifyIssueRequest(id=issue.id, urgency="urgent", reason="墙体开裂，有坠落风险", version=blown.version)
    )
    up = wait_for(lambda: (w := whistle(system, task.whistle_id)).call_type == "emergency" and w)
    assert up.upgraded_from == "service" and up.call_type_zh == "紧急集结号"
    assert at(up.report_in_by) < at(before.report_in_by) and at(up.complete_by) < at(before.complete_by)
    assert at(up.report_in_by) - datetime.now(UTC) < timedelta(minutes=31)
    assert scene.unit_g2 in {t.id for t in up.targets}  # an emergency calls every unit of the community
    t = dispatch(system).GetTask(pb.GetTaskRequest(id=task.id))
    assert (t.call_type, t.urgency, t.assistant_places) == ("emergency", "urgent", 3)
    assert t.complete_by == up.complete_by
    assert t.history[-1].action == "upgraded" and "墙体开裂" in t.history[-1].reason
    upgraded = wait_for(lambda: [m for k, m in events(system, task.whistle_id) if k == "WhistleUpgraded"])
    assert (upgraded[0].from_call_type, upgraded[0].to_call_type) == ("service", "emergency")  # type: ignore[attr-defined]
    # A less urgent class later does not downgrade the call.
    latest = intake(system).GetIssue(ipb.GetIssueRequest(id=issue.id))
    intake(system).ReclassifyIssue(
        ipb.ReclassifyIssueRequest(id=issue.id, urgency="routine", reason="已排除险情", version=latest.version)
    )
    wait_for(lambda: dispatch(system).GetTask(pb.GetTaskRequest(id=task.id)).urgency == "routine")
    assert whistle(system, task.whistle_id).call_type == "emergency"


def test_a_replayed_classification_changes_nothing(system: System, scene: Scene) -> None:
    issue = report(system, scene)
    task = task_of(system, issue.id)
    w = whistle(system, task.whistle_id)
    # The very records intake published, sent again under new event ids (a replay dedupe cannot catch).
    originals = [
        r
        for r in read_topic(system.settings.kafka_bootstrap, topic_for("intake"))
        if r.key == f"{T}:{issue.id}".encode() and dict(r.headers)["ce_type"] == b"hongling.events.v1.IssueClassified"
    ]
    assert len(originals) == 1
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    for n in range(2):
        headers = [(k, f"replay-{n}-{unique()}".encode() if k == "ce_id" else v) for k, v in originals[0].headers]
        producer.send(topic_for("intake"), key=originals[0].key, value=originals[0].value, headers=headers)
    producer.flush(10)
    producer.close()
    # Then a later event of the same issue (the same key: the same partition, handled after the replays): a
    # more urgent class. Once its upgrade shows, the replays had their turn; the upgrade is one write of each.
    get = intake(system).GetIssue
    blown = wait_for(lambda: (i := get(ipb.GetIssueRequest(id=issue.id))).status == "whistle_blown" and i)
    intake(system).ReclassifyIssue(
        ipb.ReclassifyIssueRequest(id=issue.id, urgency="urgent", reason="复核：墙体开裂", version=blown.version)
    )
    up = wait_for(lambda: (x := whistle(system, w.id)).call_type == "emergency" and x)
    assert up.version == w.version + 1
    t = dispatch(system).GetTask(pb.GetTaskRequest(id=task.id))
    assert t.version == task.version + 1 and t.history[-1].action == "upgraded"
    wait_for(lambda: "WhistleUpgraded" in kinds_of(events(system, w.id)))  # after anything a replay wrote
    assert kinds_of(events(system, w.id)).count("WhistleBlown") == 1
    assert kinds_of(events(system, task.id)).count("TaskCreated") == 1


# ---------------------------------------------------------------- report-ins


def test_units_report_in_decline_with_a_reason_or_propose_another(system: System, scene: Scene) -> None:
    task = task_of(system, report(system, scene).id)
    d = dispatch(system, sub="worker-ri")
    w = d.ReportIn(
        pb.ReportInRequest(whistle_id=task.whistle_id, responder=who("member_unit", scene.unit_g1), answer="accept")
    )
    [r] = w.reports
    assert (r.responder_id, r.answer, r.answer_zh, r.late, r.targeted, r.by) == (
        scene.unit_g1,
        "accept",
        "报到",
        False,
        True,
        "worker-ri",
    )
    assert w.answered == 1
    again = d.ReportIn(
        pb.ReportInRequest(whistle_id=task.whistle_id, responder=who("member_unit", scene.unit_g1), answer="accept")
    )
    assert again.version == w.version  # the same answer again changes nothing

    err = d.fails(
        "ReportIn",
        pb.ReportInRequest(whistle_id=task.whistle_id, responder=who("member_unit", scene.unit_all), answer="decline"),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "reason"
    d.ReportIn(
        pb.ReportInRequest(
            whistle_id=task.whistle_id,
            responder=who("member_unit", scene.unit_all),
            answer="decline",
            reason="人手不足",
        )
    )
    w = d.ReportIn(
        pb.ReportInRequest(
            whistle_id=task.whistle_id,
            responder=who("person", scene.fitter),
            answer="propose",
            reason="二网格业委会有专业队伍",
            proposed=who("unit", scene.unit_g2),
        )
    )
    proposed = next(t for t in w.targets if t.id == scene.unit_g2)
    assert proposed.kind == "member_unit" and proposed.source == "proposed" and "维修能手" in proposed.reasons[0]
    assert [x.answer for x in w.reports] == ["accept", "decline", "propose"]
    # Someone who does not exist in the tenant cannot answer.
    err = d.fails(
        "ReportIn", pb.ReportInRequest(whistle_id=task.whistle_id, responder=who("person", "nobody"), answer="accept")
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "responder.id"
    err = dispatch(system, role="resident").fails(
        "ReportIn",
        pb.ReportInRequest(whistle_id=task.whistle_id, responder=who("person", scene.fitter), answer="accept"),
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    reported = wait_for(lambda: len(evs := [m for k, m in events(system, w.id) if k == "UnitReportedIn"]) == 3 and evs)
    assert [(m.responder_id, m.answer) for m in reported] == [  # type: ignore[attr-defined]
        (scene.unit_g1, "accept"),
        (scene.unit_all, "decline"),
        (scene.fitter, "propose"),
    ]


def test_at_the_report_in_deadline_the_silent_are_recorded_and_later_answers_are_late(
    system: System, scene: Scene, mongo_client: MongoClient[Any]
) -> None:
    task = task_of(system, report(system, scene).id)
    d = dispatch(system)
    d.ReportIn(
        pb.ReportInRequest(whistle_id=task.whistle_id, responder=who("member_unit", scene.unit_g1), answer="accept")
    )
    travel(mongo_client, "whistles", task.whistle_id, "report_in_by", f"w:{task.whistle_id}")
    w = wait_for(lambda: (x := whistle(system, task.whistle_id)).silent and x, timeout=30)
    assert w.report_in_closed
    silent = {t.id for t in w.targets if t.silent}
    assert scene.unit_g1 not in silent and scene.unit_all in silent and scene.fitter in silent
    missed = wait_for(lambda: [m for k, m in events(system, w.id) if k == "DeadlineMissed"])
    assert len(missed) == 1 and missed[0].deadline == "report_in"  # type: ignore[attr-defined]
    assert set(missed[0].silent_ids) == silent  # type: ignore[attr-defined]
    late = d.ReportIn(
        pb.ReportInRequest(whistle_id=w.id, responder=who("member_unit", scene.unit_all), answer="accept")
    )
    t = next(x for x in late.targets if x.id == scene.unit_all)
    assert t.late and t.silent and t.answer == "accept"  # answered after all: late, and it stays on record
    assert late.reports[-1].late
    wait_for(lambda: timers(mongo_client).count_documents({"_id": f"w:{w.id}"}) == 0)  # report-in is over


# ---------------------------------------------------------------- claims


def test_two_claimants_racing_for_the_last_place_one_wins(system: System, scene: Scene) -> None:
    task = task_of(system, report(system, scene).id)
    assert task.places_left == 2  # lead + 1 assistant
    org = Stub(org_pb2_grpc.OrgServiceStub(system.channel("org")), system, T, "subdistrict_admin")
    racers = [
        org.CreatePerson(
            org_pb2.Person(community_id=scene.area.community_id, name_zh=f"志愿者{n}", roles=["volunteer"])
        ).id
        for n in range(6)
    ]
    stubs = [dispatch(system, sub=f"racer-{n}") for n in range(len(racers))]
    start = threading.Barrier(len(racers))

    def claim(n: int) -> str:
        start.wait()
        try:
            stubs[n].ClaimTask(pb.ClaimTaskRequest(task_id=task.id, claimant=who("person", racers[n])))
            return "won"
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
            return exc.details() or ""

    with ThreadPoolExecutor(len(racers)) as pool:
        outcomes = list(pool.map(claim, range(len(racers))))
    assert outcomes.count("won") == 2, outcomes  # exactly the two places: the lead and the assistant
    losers = [o for o in outcomes if o != "won"]
    assert all("名额已满" in o or "lead place is taken" in o for o in losers), losers
    t = dispatch(system).GetTask(pb.GetTaskRequest(id=task.id))
    assert len(t.crew) == 2 and sorted(c.role for c in t.crew) == ["assistant", "lead"]
    assert t.places_left == 0 and t.status == "accepted"  # the lead claimed it: assigned and accepted at once
    lead = next(c for c in t.crew if c.role == "lead")
    assert t.assignment.id == lead.id and t.assignment.response == "accepted"
    # A last-place race on its own: one assistant place, two claimants.
    second = task_of(system, report(system, scene).id)
    dispatch(system).ClaimTask(pb.ClaimTaskRequest(task_id=second.id, claimant=who("person", racers[0]), role="lead"))
    pair = threading.Barrier(2)

    def assistant(n: int) -> bool:
        pair.wait()
        try:
            stubs[n].ClaimTask(
                pb.ClaimTaskRequest(task_id=second.id, claimant=who("person", racers[n]), role="assistant")
            )
            return True
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "名额已满" in (exc.details() or "")
            return False

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(assistant, [1, 2])) == [False, True]
    claimed = wait_for(lambda: len(e := [m for k, m in events(system, second.id) if k == "TaskClaimed"]) == 2 and e)
    assert [m.places_left for m in claimed] == [1, 0]  # type: ignore[attr-defined]
    # Claiming again the place one holds changes nothing; another role is refused.
    again = dispatch(system).ClaimTask(pb.ClaimTaskRequest(task_id=second.id, claimant=who("person", racers[0])))
    assert again.version == dispatch(system).GetTask(pb.GetTaskRequest(id=second.id)).version


# ---------------------------------------------------------------- assignment and lifecycle


def test_assign_from_the_ranked_list_decline_override_and_the_whole_lifecycle(
    system: System, scene: Scene, mongo_client: MongoClient[Any]
) -> None:
    issue = report(system, scene)
    task = task_of(system, issue.id)
    d = dispatch(system, sub="worker-9")
    ranked = d.RankCandidates(pb.RankCandidatesRequest(task_id=task.id, limit=10))
    assert ranked.considered >= 1 and "房屋维修" in ranked.needs.skills
    top = next(c for c in ranked.candidates if c.id == scene.fitter)
    assert top.kind == "person" and top.reasons and top.score > 0

    t = d.AssignTask(pb.AssignTaskRequest(task_id=task.id, assignee=who("person", scene.fitter)))
    assert (t.status, t.assignment.id, t.assignment.override, t.assignment.by) == (
        "assigned",
        scene.fitter,
        False,
        "worker-9",
    )
    assert list(t.allowed_actions)[:3] == ["assign", "accept", "decline"]
    err = d.fails("RespondToAssignment", pb.RespondToAssignmentRequest(task_id=task.id, accept=False))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "reason"
    t = d.RespondToAssignment(pb.RespondToAssignmentRequest(task_id=task.id, accept=False, reason="本周外出"))
    assert t.status == "open" and not t.crew and t.assignment.response == "declined" and t.places_left == 2

    # Someone outside the ranked list is an override: only with a reason.
    err = d.fails("AssignTask", pb.AssignTaskRequest(task_id=task.id, assignee=who("person", scene.outsider)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "reason"
    t = d.AssignTask(
        pb.AssignTaskRequest(task_id=task.id, assignee=who("person", scene.outsider), reason="住在隔壁，熟悉情况")
    )
    assert t.assignment.override and t.assignment.name_zh == "热心居民"
    stale = t.version - 1
    err = d.fails(
        "RespondToAssignment", pb.RespondToAssignmentRequest(task_id=task.id, accept=True, expected_version=stale)
    )
    assert err.code() == grpc.StatusCode.ABORTED
    t = d.RespondToAssignment(pb.RespondToAssignmentRequest(task_id=task.id, accept=True, expected_version=t.version))
    assert t.status == "accepted"

    def act(action: str, reason: str = "") -> pb.Task:
        return d.TransitionTask(pb.TransitionTaskRequest(task_id=task.id, action=action, reason=reason))

    err = d.fails("TransitionTask", pb.TransitionTaskRequest(task_id=task.id, action="done"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "已接单" in (err.details() or "")
    assert act("start").status == "in_progress"
    t = act("done")
    assert t.status == "done" and t.finished_at.seconds and list(t.allowed_actions) == []
    assert timers(mongo_client).count_documents({"_id": f"t:{task.id}"}) == 0
    # Verifying and rejecting are evaluation's verdicts (验单), not transitions.
    for bare in ("verify", "reject"):
        err = d.fails("TransitionTask", pb.TransitionTaskRequest(task_id=task.id, action=bare, reason="墙面未修补平整"))
        assert refused_by_grpc(err) and field_of(err) == "action"
    assert send_back(system, T, task.id, "墙面未修补平整").status == "reopened"  # rejected → reopened at once
    assert timers(mongo_client).count_documents({"_id": f"t:{task.id}"}) == 1  # the clock runs again
    assert act("start").status == "in_progress"
    assert act("done").status == "done"
    t = verify(system, T, task.id)
    assert t.status == "verified" and t.status_zh == "已验收" and list(t.allowed_actions) == []
    assert [h.action for h in t.history] == [
        "created",
        "assigned",
        "declined",
        "assigned",
        "accepted",
        "start",
        "done",
        "reject",
        "reopen",
        "start",
        "done",
        "verify",
    ]
    changes = wait_for(
        lambda: len(e := [m for k, m in events(system, task.id) if k == "TaskStatusChanged"]) == 11 and e
    )
    assert [(m.from_status, m.to_status) for m in changes][:3] == [  # type: ignore[attr-defined]
        ("open", "assigned"),
        ("assigned", "open"),
        ("open", "assigned"),
    ]
    assert changes[1].assignee_id == scene.fitter  # type: ignore[attr-defined]  (a decline names who was released)
    assigned = [m for k, m in events(system, task.id) if k == "TaskAssigned"]
    assert [m.override for m in assigned] == [False, True]  # type: ignore[attr-defined]
    assert assigned[1].reason == "住在隔壁，熟悉情况"  # type: ignore[attr-defined]
    get = intake(system).GetIssue
    wait_for(lambda: get(ipb.GetIssueRequest(id=issue.id)).status == "verified")
    w = whistle(system, task.whistle_id)
    assert w.status == "closed" and w.places_left == 0
    err = d.fails(
        "ReportIn", pb.ReportInRequest(whistle_id=w.id, responder=who("member_unit", scene.unit_g1), answer="accept")
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_cancelled_task_stops_its_clocks_and_refuses_more_work(
    system: System, scene: Scene, mongo_client: MongoClient[Any]
) -> None:
    issue = report(system, scene)
    task = task_of(system, issue.id)
    d = dispatch(system)
    err = d.fails("TransitionTask", pb.TransitionTaskRequest(task_id=task.id, action="cancel"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    t = d.TransitionTask(pb.TransitionTaskRequest(task_id=task.id, action="cancel", reason="居民已自行解决"))
    assert (t.status, t.cancel_reason) == ("cancelled", "居民已自行解决")
    left = timers(mongo_client).count_documents({"_id": {"$in": [f"t:{task.id}", f"w:{task.whistle_id}"]}})
    assert left == 0
    for req, name in (
        (pb.ClaimTaskRequest(task_id=task.id, claimant=who("person", scene.fitter)), "ClaimTask"),
        (pb.AssignTaskRequest(task_id=task.id, assignee=who("person", scene.fitter)), "AssignTask"),
        (pb.TransitionTaskRequest(task_id=task.id, action="start"), "TransitionTask"),
    ):
        assert d.fails(name, req).code() == grpc.StatusCode.FAILED_PRECONDITION
    get = intake(system).GetIssue
    wait_for(lambda: get(ipb.GetIssueRequest(id=issue.id)).status == "cancelled")


# ---------------------------------------------------------------- clocks


def test_a_missed_completion_goes_to_the_subdistrict_then_the_district(
    system: System, scene: Scene, mongo_client: MongoClient[Any]
) -> None:
    task = task_of(system, report(system, scene).id)
    d = dispatch(system)
    d.ClaimTask(pb.ClaimTaskRequest(task_id=task.id, claimant=who("member_unit", scene.unit_g1), role="lead"))
    travel(mongo_client, "tasks", task.id, "complete_by", f"t:{task.id}")
    t = wait_for(lambda: (x := d.GetTask(pb.GetTaskRequest(id=task.id))).escalation_level and x, timeout=30)
    assert t.escalation_level == "subdistrict" and t.overdue
    assert [h.action for h in t.history][-2:] == ["deadline_missed", "escalated"]
    # The task's timer moves on to the district escalation, the rule's period after the missed deadline.
    nxt = wait_for(
        lambda: timers(mongo_client).find_one({"_id": f"t:{task.id}", "kind": "dispatch.district_escalation"})
    )
    assert at_(nxt["due_at"]) - at(t.complete_by) == timedelta(hours=72)
    # The overdue queue and the lists are read models: the escalation shows there once the projector has it.
    overdue = pb.ListOverdueRequest(community_id=scene.area.community_id, deadline="completion")
    wait_for(lambda: task.id in {x.id for x in d.ListOverdue(overdue).tasks})
    listed = pb.ListTasksRequest(community_id=scene.area.community_id, overdue=True, page_size=200)
    wait_for(lambda: task.id in {x.id for x in d.ListTasks(listed).tasks})
    timers(mongo_client).update_one(
        {"_id": f"t:{task.id}"}, {"$set": {"next_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    t = wait_for(
        lambda: (x := d.GetTask(pb.GetTaskRequest(id=task.id))).escalation_level == "district" and x, timeout=30
    )
    evs = wait_for(
        lambda: (
            len(e := [(k, m) for k, m in events(system, task.id) if k in ("DeadlineMissed", "Escalated")]) == 3 and e
        )
    )
    assert [(k, getattr(m, "level", getattr(m, "deadline", ""))) for k, m in evs] == [
        ("DeadlineMissed", "completion"),
        ("Escalated", "subdistrict"),
        ("Escalated", "district"),
    ]
    assert evs[0][1].lead_id == scene.unit_g1  # type: ignore[attr-defined]  (who had it, for evaluation)
    # Done at last: its clocks stop.
    for action in ("start", "done"):
        d.TransitionTask(pb.TransitionTaskRequest(task_id=task.id, action=action))
    assert timers(mongo_client).count_documents({"_id": f"t:{task.id}"}) == 0


# ---------------------------------------------------------------- manual calls and the board


def test_a_worker_blows_one_call_for_several_issues(system: System, scene: Scene) -> None:
    a = report(system, scene)
    b = report(system, scene, title="楼顶漏水", category="water_supply")  # major → tackling
    ta, tb = task_of(system, a.id), task_of(system, b.id)
    d = dispatch(system, sub="worker-3")
    key = unique("call")
    w = d.BlowWhistle(
        pb.BlowWhistleRequest(
            issue_ids=[a.id, b.id], note="两处一起处理", targets=[who("person", scene.outsider)], idempotency_key=key
        )
    )
    assert (w.call_type, w.manual, w.blown_by, w.note) == ("tackling", True, "worker-3", "两处一起处理")
    assert sorted(w.issue_ids) == sorted([a.id, b.id]) and len(w.tasks) == 2
    assert any(t.id == scene.outsider and t.source == "manual" for t in w.targets)
    assert d.BlowWhistle(pb.BlowWhistleRequest(issue_ids=[a.id, b.id], idempotency_key=key)).id == w.id
    t = d.GetTask(pb.GetTaskRequest(id=ta.id))
    assert t.whistle_id == w.id and list(t.whistle_ids) == [ta.whistle_id, w.id]
    assert t.call_type == "tackling" and at(t.complete_by) <= at(w.complete_by)  # upgraded, never extended
    assert d.GetTask(pb.GetTaskRequest(id=tb.id)).whistle_id == w.id

    err = d.fails("BlowWhistle", pb.BlowWhistleRequest(issue_ids=["no-such-issue"]))
    assert err.code() == grpc.StatusCode.NOT_FOUND and field_of(err) == "issue_ids"
    other = make_area(system, T)
    elsewhere = intake(system).CreateIssue(
        ipb.CreateIssueRequest(
            title="路灯不亮", description="x", channel="online", category="road_facility", location=other.point(1)
        )
    )
    task_of(system, elsewhere.id)
    err = d.fails("BlowWhistle", pb.BlowWhistleRequest(issue_ids=[a.id, elsewhere.id]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = dispatch(system, role="resident").fails("BlowWhistle", pb.BlowWhistleRequest(issue_ids=[a.id]))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_whistle_board_and_my_tasks(system: System, scene: Scene) -> None:
    tasks = [task_of(system, report(system, scene).id) for _ in range(3)]
    d = dispatch(system)

    # The board and the lists come from the SQL read models, which the projector fills just after each write.
    def open_board() -> pb.ListWhistlesResponse | None:
        got = d.ListWhistles(pb.ListWhistlesRequest(community_id=scene.area.community_id, status="open", page_size=200))
        return got if {t.whistle_id for t in tasks} <= {w.id for w in got.whistles} else None

    board = wait_for(open_board)
    assert all(w.status == "open" and w.community_id == scene.area.community_id for w in board.whistles)
    blown = [w.blown_at.ToDatetime() for w in board.whistles]
    assert blown == sorted(blown, reverse=True)
    # Paging: two at a time, no repeats, every one found.
    seen: list[str] = []
    token = ""
    while True:
        page = d.ListWhistles(
            pb.ListWhistlesRequest(community_id=scene.area.community_id, page_size=2, page_token=token)
        )
        seen += [w.id for w in page.whistles]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) and {t.whistle_id for t in tasks} <= set(seen)
    # Targeted calls of one unit, and "my tasks" of a helper.
    targeted = d.ListWhistles(pb.ListWhistlesRequest(responder_id=scene.unit_g1, page_size=200))
    assert {t.whistle_id for t in tasks} <= {w.id for w in targeted.whistles}
    d.ClaimTask(pb.ClaimTaskRequest(task_id=tasks[0].id, claimant=who("person", scene.outsider), role="assistant"))
    wait_for(
        lambda: (
            tasks[0].id
            in {t.id for t in d.ListTasks(pb.ListTasksRequest(assignee_id=scene.outsider, page_size=200)).tasks}
        )
    )
    opened = d.ListTasks(pb.ListTasksRequest(community_id=scene.area.community_id, status="open", page_size=200))
    assert {t.id for t in tasks} <= {t.id for t in opened.tasks}
    err = d.fails("ListTasks", pb.ListTasksRequest(status="sleeping"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "status"
    err = d.fails("ListTasks", pb.ListTasksRequest(page_token="garbage"))
    assert field_of(err) == "page_token"
    err = dispatch(system, role="resident").fails("ListWhistles", pb.ListWhistlesRequest())
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- rules and metrics


@pytest.fixture
def rules_restored(system: System) -> Iterator[Stub]:
    admin = dispatch(system, role="subdistrict_admin", tenant=RULES_TENANT)
    yield admin
    current = admin.GetDispatchRules(pb.GetDispatchRulesRequest())
    if current.version:
        defaults = [
            pb.CallTypeRule(
                call_type=c,
                report_in_minutes=m[0],
                completion_minutes=m[1],
                report_in_reminder_minutes=m[2],
                completion_reminder_minutes=m[3],
                district_escalation_minutes=m[4],
                assistant_places=m[5],
            )
            for c, m in (
                ("service", (4320, 21600, 720, 2880, 4320, 1)),
                ("tackling", (1440, 10080, 240, 1440, 1440, 2)),
                ("emergency", (30, 1440, 10, 120, 120, 3)),
            )
        ]
        admin.PutDispatchRules(pb.DispatchRules(call_types=defaults, matching_targets=5, version=current.version))


def test_tenant_rules_set_the_deadlines_of_new_calls(system: System, rules_restored: Stub) -> None:
    admin = rules_restored
    rules = admin.GetDispatchRules(pb.GetDispatchRulesRequest())
    assert [c.call_type for c in rules.call_types] == ["service", "tackling", "emergency"]
    em = rules.call_types[2]
    assert (em.name_zh, em.report_in_minutes, em.completion_minutes, em.urgency) == ("紧急集结号", 30, 1440, "urgent")
    changed = pb.DispatchRules()
    changed.CopyFrom(rules)
    changed.call_types[2].report_in_minutes = 15
    worker = Stub(
        dispatch_pb2_grpc.DispatchServiceStub(system.channel("dispatch")),
        system,
        RULES_TENANT,
        "community_worker",
        community="any-community",
    )
    err = worker.fails("PutDispatchRules", changed)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = pb.DispatchRules()
    bad.CopyFrom(changed)
    bad.call_types[2].report_in_reminder_minutes = 20
    err = admin.fails("PutDispatchRules", bad)
    assert (
        err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "call_types[2].report_in_reminder_minutes"
    )
    changed.call_types[2].report_in_reminder_minutes = 5
    stored = admin.PutDispatchRules(changed)
    assert stored.version == rules.version + 1 and stored.call_types[2].report_in_minutes == 15
    assert admin.fails("PutDispatchRules", changed).code() == grpc.StatusCode.ABORTED  # stale version
    # A new emergency in that tenant gets the new report-in deadline.
    area = make_area(system, RULES_TENANT)
    issue = Stub(
        intake_pb2_grpc.IntakeServiceStub(system.channel("intake")), system, RULES_TENANT, "resident"
    ).CreateIssue(
        ipb.CreateIssueRequest(
            title="燃气泄漏", description="x", channel="online", category="gas_safety", location=area.point(1)
        )
    )
    task = task_of(system, issue.id, tenant=RULES_TENANT)
    w = dispatch(system, tenant=RULES_TENANT).GetWhistle(pb.GetWhistleRequest(id=task.whistle_id))
    assert at(w.report_in_by) - at(w.blown_at) == timedelta(minutes=15)


def test_business_metrics_per_tenant(system: System, scene: Scene) -> None:
    task_of(system, report(system, scene).id)
    text = requests.get(f"http://127.0.0.1:{system.settings.metrics_port('dispatch')}/metrics", timeout=5).text
    assert f'hongling_whistles_blown_total{{call_type="service",manual="false",tenant="{T}"}}' in text
    assert "hongling_whistle_report_in_seconds_bucket" in text
    assert "# TYPE hongling_dispatch_deadlines_missed_total counter" in text


def _commands(system: System, service: str, command: str, collection: str) -> float:
    text = requests.get(f"http://127.0.0.1:{system.settings.metrics_port(service)}/metrics", timeout=5).text
    line = f'hongling_mongo_commands_total{{collection="{collection}",command="{command}"}} '
    return sum(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


def test_database_commands_are_counted_per_command_and_collection(system: System, scene: Scene) -> None:
    """What an issue costs the database shows on each service's /metrics (the benchmarks print it per issue):
    a new issue's task and call are inserted once each, and no processed mark is read or written for it."""
    before = {
        (c, coll): _commands(system, "dispatch", c, coll)
        for c, coll in (("insert", "tasks"), ("insert", "whistles"), ("find", "processed_events"))
    }
    task_of(system, report(system, scene).id)
    wait_for(lambda: _commands(system, "dispatch", "insert", "whistles") > before[("insert", "whistles")])
    assert _commands(system, "dispatch", "insert", "tasks") == before[("insert", "tasks")] + 1
    assert _commands(system, "dispatch", "insert", "whistles") == before[("insert", "whistles")] + 1
    assert _commands(system, "dispatch", "find", "processed_events") == before[("find", "processed_events")]


def member(system: System, kind: str, rid: str) -> Stub:
    """Calls as a member (成员单位/个人) whose credential is bound to the helper (kind, rid)."""
    stub = dispatch(system)
    me = Principal(sub=f"member-{rid}", role="member", tenants=(T,), responder=(kind, rid))
    stub.principal = me
    return stub


def test_a_member_acts_only_as_itself(system: System, scene: Scene) -> None:
    task = task_of(system, report(system, scene).id)
    me, other = member(system, "person", scene.fitter), member(system, "person", scene.outsider)
    err = me.fails("ClaimTask", pb.ClaimTaskRequest(task_id=task.id, claimant=who("person", scene.outsider)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and field_of(err) == "claimant"
    t = me.ClaimTask(pb.ClaimTaskRequest(task_id=task.id))  # no claimant named: itself
    assert t.status == "accepted" and t.assignment.id == scene.fitter and t.crew[0].by == f"member-{scene.fitter}"
    w = me.ReportIn(pb.ReportInRequest(whistle_id=task.whistle_id, answer="accept"))
    assert [(r.responder_id, r.answer) for r in w.reports] == [(scene.fitter, "accept")]
    # The ranked list marks who is on the task and who answered its call.
    ranked = dispatch(system).RankCandidates(pb.RankCandidatesRequest(task_id=task.id, limit=20))
    fitter = next(c for c in ranked.candidates if c.id == scene.fitter)
    assert fitter.on_crew and fitter.reported_in
    assert not any(c.reported_in for c in ranked.candidates if c.id != scene.fitter)
    assert other.fails("TransitionTask", pb.TransitionTaskRequest(task_id=task.id, action="start")).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert me.TransitionTask(pb.TransitionTaskRequest(task_id=task.id, action="start")).status == "in_progress"
    assert me.TransitionTask(pb.TransitionTaskRequest(task_id=task.id, action="done")).status == "done"
    err = me.fails("TransitionTask", pb.TransitionTaskRequest(task_id=task.id, action="verify"))
    assert refused_by_grpc(err)  # verifying is 验单's, no transition

    def listed() -> pb.ListTasksResponse | None:
        got = me.ListTasks(pb.ListTasksRequest(page_size=200))
        return got if task.id in {x.id for x in got.tasks} else None

    mine = wait_for(listed)
    assert all(scene.fitter in {c.id for c in x.crew} for x in mine.tasks)
    assert me.fails("ListTasks", pb.ListTasksRequest(assignee_id=scene.outsider)).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    for name, req in (
        ("AssignTask", pb.AssignTaskRequest(task_id=task.id, assignee=who("person", scene.fitter))),
        ("RankCandidates", pb.RankCandidatesRequest(task_id=task.id)),
        ("BlowWhistle", pb.BlowWhistleRequest(issue_ids=[task.issue_id])),
    ):
        assert me.fails(name, req).code() == grpc.StatusCode.PERMISSION_DENIED
    # The board is open to members.
    assert me.GetWhistle(pb.GetWhistleRequest(id=task.whistle_id)).id == task.whistle_id
