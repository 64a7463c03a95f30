"""Verification before filing (核实立案) in the intake service over real gRPC, FerretDB and Kafka: the events on
hongling.intake.v1 in their order (no IssueClassified until a worker files the report), a decline and its
duplicates (closed with it, or left for their own decision), two decisions at once (one wins, the other is
refused), the deadline's escalation fired by intake's own timer worker, what a caller who is not staff reads of
a decision, a reclassified report that the rules now file directly, and declined reports out of the hot topics.

The tenant's rules are this module's for its duration (verify for one category, duplicates within 10 m) and
restored afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.message import Message
from hongling.events.v1 import intake_events_pb2 as iev
from hongling.intake.v1 import intake_pb2 as pb
from pymongo import MongoClient

from services.common.events import CloudEvent, topic_for
from tests.conftest import System, read_topic, wait_for
from tests.integration.test_intake_service import PNG, Area, field_of, intake, make_area, new_issue

T = "taiqian"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CATEGORY = "elderly_care"
EVENTS = {
    c.DESCRIPTOR.full_name: c
    for c in (
        iev.IssueReceived,
        iev.IssueClassified,
        iev.IssueStatusChanged,
        iev.IssueMarkedDuplicate,
        iev.IssueFiled,
        iev.IssueDeclined,
        iev.IssueVerificationOverdue,
        iev.IssueReclassified,
    )
}


def events_of(system: System, issue_id: str) -> list[tuple[str, Message]]:
    out = []
    for r in read_topic(system.settings.kafka_bootstrap, topic_for("intake")):
        if r.key == f"{T}:{issue_id}".encode():
            ce = CloudEvent.from_record(r.headers, r.value)
            out.append((ce.type.rsplit(".", 1)[-1], ce.decode(EVENTS[ce.type])))
    return out


def kinds(system: System, issue_id: str) -> list[str]:
    return [k for k, _ in events_of(system, issue_id)]


@pytest.fixture(scope="module")
def area(system: System) -> Iterator[Area]:
    admin = intake(system, tenant=T)
    before = admin.GetClassificationRules(pb.GetClassificationRulesRequest())
    wanted = pb.ClassificationRules()
    wanted.CopyFrom(before)
    wanted.duplicate_distance_m = 10
    del wanted.filing[:]
    wanted.filing.append(pb.FilingRule(mode="verify", category=CATEGORY))
    stored = admin.PutClassificationRules(wanted)
    yield make_area(system, T)
    before.version = stored.version
    admin.PutClassificationRules(before)


def pending(system: System, area: Area, north_m: float, **kw: Any) -> pb.Issue:
    issue: pb.Issue = intake(system, tenant=T, role="resident").CreateIssue(
        new_issue(area.point(1, north_m=north_m), category=CATEGORY, title="独居老人需要探访", **kw)
    )
    assert issue.status == "pending_verification" and issue.filing.mode == "verify"
    return issue


def worker(system: System, area: Area) -> Any:
    return intake(system, tenant=T, role="community_worker", sub="itest-worker-1", community=area.community_id)


def test_nothing_goes_to_dispatch_until_a_worker_files_it(system: System, area: Area) -> None:
    issue = pending(system, area, 0)
    assert issue.history[-1].kind == "pending_verification"
    # The deadline is the class default counted from the report's own receipt time (one clock reading).
    assert issue.filing.due_at.ToDatetime() - issue.created_at.ToDatetime() == timedelta(hours=4)
    filed = worker(system, area).DecideFiling(pb.DecideFilingRequest(id=issue.id, decision="accept", note="已上门"))
    assert filed.status == "classified" and filed.filing.decision == "accepted"
    assert filed.filing.decided_by == "itest-worker-1" and filed.version == issue.version + 1
    found = wait_for(lambda: "IssueClassified" in kinds(system, issue.id) and events_of(system, issue.id))
    assert [k for k, _ in found][:4] == ["IssueReceived", "IssueStatusChanged", "IssueFiled", "IssueClassified"]
    by_kind = dict(found)
    filed_event = by_kind["IssueFiled"]
    assert isinstance(filed_event, iev.IssueFiled)
    assert (filed_event.by, filed_event.community_id, filed_event.note) == (
        "itest-worker-1",
        area.community_id,
        "已上门",
    )
    classified = by_kind["IssueClassified"]
    assert isinstance(classified, iev.IssueClassified)
    assert classified.urgency == issue.urgency and classified.community_id == area.community_id
    # Dispatch takes it on: the whistle comes back as the issue's status.
    svc = intake(system, tenant=T)
    wait_for(lambda: svc.GetIssue(pb.GetIssueRequest(id=issue.id)).status == "whistle_blown")


def test_a_decline_is_an_event_and_closes_the_issue_and_its_duplicates(system: System, area: Area) -> None:
    original = pending(system, area, -300)
    dup = intake(system, tenant=T, role="resident").CreateIssue(
        new_issue(area.point(1, north_m=-300), category=CATEGORY, title="独居老人需要探访")
    )
    assert dup.status == "duplicate" and dup.duplicate_of == original.id
    req = pb.DecideFilingRequest(id=original.id, decision="decline", reason="out_of_scope", referred_to="court")
    declined = worker(system, area).DecideFiling(req)
    assert declined.status == "declined" and declined.open311_status == "closed"
    assert declined.filing.status_note_zh == "不予立案：不属于社区职责，请向人民法院寻求解决"
    found = wait_for(lambda: "IssueDeclined" in kinds(system, original.id) and dict(events_of(system, original.id)))
    event = found["IssueDeclined"]
    assert isinstance(event, iev.IssueDeclined)
    assert (event.reason, event.referred_to, event.by) == ("out_of_scope", "court", "itest-worker-1")
    assert event.status_note_en == "declined: out of scope, referred to a court"
    assert "IssueClassified" not in found
    svc = intake(system, tenant=T)
    closed = wait_for(lambda: (d := svc.GetIssue(pb.GetIssueRequest(id=dup.id))).status == "declined" and d)
    assert closed.history[-1].note_zh.endswith("不予立案：不属于社区职责，请向人民法院寻求解决")
    # Closed: a new report at the same spot starts an issue of its own.
    again = pending(system, area, -300)
    assert again.duplicate_of == ""


def test_two_decisions_at_once_one_wins_the_other_is_refused(system: System, area: Area) -> None:
    issue = pending(system, area, 300)
    results: list[str] = []
    lock = threading.Lock()

    def decide(req: pb.DecideFilingRequest) -> None:
        try:
            got = worker(system, area).DecideFiling(req)
            outcome = got.status
        except grpc.RpcError as exc:
            outcome = exc.code().name
        with lock:
            results.append(outcome)

    reqs = [
        pb.DecideFilingRequest(id=issue.id, decision="accept"),
        pb.DecideFilingRequest(id=issue.id, decision="decline", reason="abusive"),
    ]
    threads = [threading.Thread(target=decide, args=(r,)) for r in reqs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) in (["FAILED_PRECONDITION", "classified"], ["FAILED_PRECONDITION", "declined"]), results
    # The loser wrote nothing: the one decision's event is the issue's only one.
    winner = "IssueFiled" if "classified" in results else "IssueDeclined"
    decided = wait_for(lambda: [k for k in kinds(system, issue.id) if k in ("IssueFiled", "IssueDeclined")])
    assert decided == [winner]


def test_refusals_name_the_field_and_the_status(system: System, area: Area) -> None:
    issue = pending(system, area, -450)
    w = worker(system, area)
    err = w.fails("DecideFiling", pb.DecideFilingRequest(id=issue.id, decision="decline", reason="duplicate"))
    assert (err.code(), field_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "duplicate_of")
    stale = w.fails("DecideFiling", pb.DecideFilingRequest(id=issue.id, decision="accept", version=issue.version + 5))
    assert stale.code() == grpc.StatusCode.ABORTED
    other = intake(system, tenant=T, role="community_worker", community="another-community")
    missing = other.fails("DecideFiling", pb.DecideFilingRequest(id=issue.id, decision="accept"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    resident = intake(system, tenant=T, role="resident")
    assert resident.fails("DecideFiling", pb.DecideFilingRequest(id=issue.id, decision="accept")).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    ok = w.DecideFiling(pb.DecideFilingRequest(id=issue.id, decision="accept", version=issue.version))
    assert ok.status == "classified"
    done = w.fails("DecideFiling", pb.DecideFilingRequest(id=issue.id, decision="accept"))
    assert (done.code(), field_of(done)) == (grpc.StatusCode.FAILED_PRECONDITION, "decision")


def test_the_deadline_escalates_once_through_intakes_timer_worker(
    system: System, area: Area, mongo_client: MongoClient[Any]
) -> None:
    issue = pending(system, area, 450)
    db = mongo_client[f"hl_intake_{T}"]
    timer = db["timers"].find_one({"_id": f"fv:{issue.id}"})
    assert timer is not None and timer["kind"] == "intake.verification_deadline"
    # Let the deadline pass, as time would: the issue's deadline and its timer a second into the past (found
    # by the timer worker's rescan, every 5 s in this stack, as one left by another intake process would be).
    past = datetime.now(UTC) - timedelta(seconds=1)
    db["issues"].update_one({"_id": issue.id}, {"$set": {"filing.due_at": past}})
    db["timers"].update_one({"_id": f"fv:{issue.id}"}, {"$set": {"due_at": past, "next_at": past}})
    svc = intake(system, tenant=T)
    escalated = wait_for(lambda: (i := svc.GetIssue(pb.GetIssueRequest(id=issue.id))).filing.overdue and i)
    assert escalated.status == "pending_verification" and escalated.history[-1].kind == "verification_overdue"
    found = wait_for(lambda: "IssueVerificationOverdue" in kinds(system, issue.id) and events_of(system, issue.id))
    overdue = [m for k, m in found if k == "IssueVerificationOverdue"]
    assert len(overdue) == 1
    assert isinstance(overdue[0], iev.IssueVerificationOverdue)
    assert (overdue[0].escalated_to, overdue[0].community_id) == ("subdistrict", area.community_id)
    wait_for(lambda: db["timers"].find_one({"_id": f"fv:{issue.id}"}) is None)  # fired, then deleted
    listed = wait_for(
        lambda: svc.ListIssues(pb.ListIssuesRequest(verification_overdue=True, community_id=area.community_id)).issues
    )
    assert [i.id for i in listed] == [issue.id]


def test_a_duplicate_of_a_report_declined_for_itself_waits_for_its_own_decision(
    system: System, area: Area, mongo_client: MongoClient[Any]
) -> None:
    svc, w = intake(system, tenant=T), worker(system, area)
    for north_m, body in (
        (150, {"reason": "abusive"}),
        (-150, {"reason": "insufficient_info", "ask": "具体楼号"}),
    ):
        original = pending(system, area, north_m)
        dup = intake(system, tenant=T, role="resident").CreateIssue(
            new_issue(area.point(1, north_m=north_m), category=CATEGORY, title="独居老人需要探访")
        )
        assert dup.status == "duplicate" and dup.duplicate_of == original.id
        wait_for(lambda o=original, d=dup: d.id in svc.GetIssue(pb.GetIssueRequest(id=o.id)).duplicates)
        declined = w.DecideFiling(pb.DecideFilingRequest(id=original.id, decision="decline", **body))
        assert declined.status == "declined"
        # Not closed as abusive (or as lacking information) with it: no longer its duplicate, waiting on its own.
        waiting = svc.GetIssue(pb.GetIssueRequest(id=dup.id))
        assert (waiting.status, waiting.duplicate_of, waiting.filing.mode) == ("pending_verification", "", "verify")
        assert waiting.filing.decision == "" and waiting.filing.due_at.seconds > 0
        assert waiting.history[-1].note_zh == f"原事项 {original.id} 不予立案，本反映单独核实办理"
        db = mongo_client[f"hl_intake_{T}"]
        assert db["timers"].find_one({"_id": f"fv:{dup.id}"}) is not None  # its own deadline escalates it
        filed = w.DecideFiling(pb.DecideFilingRequest(id=dup.id, decision="accept"))
        assert filed.status == "classified"
        wait_for(lambda d=dup: "IssueClassified" in kinds(system, d.id))


def test_callers_who_are_not_staff_read_the_reason_never_the_note_nor_who_decided(system: System, area: Area) -> None:
    issue = pending(system, area, 225)
    req = pb.DecideFilingRequest(id=issue.id, decision="decline", reason="out_of_scope", referred_to="12345")
    req.note = "物业合同纠纷，已电话告知"
    worker(system, area).DecideFiling(req)
    get = pb.GetIssueRequest(id=issue.id)
    staff = intake(system, tenant=T).GetIssue(get)
    assert staff.filing.note == "物业合同纠纷，已电话告知" and staff.filing.decided_by == "itest-worker-1"
    assert staff.history[-1].by == "itest-worker-1"
    for role in ("public", "resident"):
        seen = intake(system, tenant=T, role=role).GetIssue(get)
        assert seen.status == "declined" and seen.filing.decline_reason == "out_of_scope"
        assert seen.filing.status_note_zh == "不予立案：不属于社区职责，已转12345热线"
        assert seen.filing.referred_to == "12345"
        assert (seen.filing.note, seen.filing.decided_by) == ("", "")
        assert all(h.by == "" for h in seen.history) and "itest-worker-1" not in str(seen)
        assert seen.description == issue.description  # not abusive: the report itself stays readable


def test_a_report_declined_as_abusive_keeps_its_text_and_files_from_the_public(system: System, area: Area) -> None:
    issue = pending(
        system,
        area,
        -225,
        description="辱骂内容测试",
        attachments=[pb.AttachmentUpload(filename="x.png", content_type="image/png", content=PNG)],
    )
    worker(system, area).DecideFiling(pb.DecideFilingRequest(id=issue.id, decision="decline", reason="abusive"))
    get = pb.GetIssueRequest(id=issue.id)
    attachment = pb.GetAttachmentRequest(issue_id=issue.id, attachment_id=issue.attachments[0].id)
    public = intake(system, tenant=T, role="public")
    seen = public.GetIssue(get)
    assert (seen.status, seen.open311_status, seen.filing.decline_reason) == ("declined", "closed", "abusive")
    assert seen.filing.status_note_zh == "不予立案：内容不当（恶意或骚扰）"
    assert (
        seen.description == "内容不予公开（不予立案：内容不当） (withheld: declined as abusive)"
        and not seen.attachments
    )
    assert seen.title == "内容不予公开（不予立案：内容不当）" and "辱骂内容测试" not in str(seen)
    assert public.fails("GetAttachment", attachment).code() == grpc.StatusCode.NOT_FOUND
    staff = intake(system, tenant=T)
    assert staff.GetIssue(get).description == "辱骂内容测试"
    assert staff.GetAttachment(attachment).content == PNG


def test_a_waiting_report_reclassified_into_a_class_filed_directly_goes_to_dispatch(system: System, area: Area) -> None:
    issue = pending(system, area, 375)
    w = worker(system, area)
    # Still of the category the tenant verifies: it keeps waiting, with its deadline.
    major = w.ReclassifyIssue(
        pb.ReclassifyIssueRequest(id=issue.id, urgency="major", reason="多户反映", version=issue.version)
    )
    assert major.status == "pending_verification" and major.filing.due_at == issue.filing.due_at
    # Urgent, of a category no rule holds: the default files it directly — classified, and dispatch takes it.
    urgent = w.ReclassifyIssue(
        pb.ReclassifyIssueRequest(
            id=issue.id, urgency="urgent", category="property_repair", reason="有漏电危险", version=major.version
        )
    )
    assert (urgent.status, urgent.filing.mode, urgent.filing.decision) == ("classified", "direct", "")
    assert urgent.history[-1].kind == "classified"
    found = wait_for(lambda: "IssueClassified" in kinds(system, issue.id) and events_of(system, issue.id))
    classified = dict(found)["IssueClassified"]
    assert isinstance(classified, iev.IssueClassified)
    assert (classified.urgency, classified.category) == ("urgent", "property_repair")
    svc = intake(system, tenant=T)
    wait_for(lambda: svc.GetIssue(pb.GetIssueRequest(id=issue.id)).status != "classified")
    assert w.fails("DecideFiling", pb.DecideFilingRequest(id=issue.id, decision="accept")).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )


def test_a_declined_report_leaves_the_hot_topics(system: System) -> None:
    own = make_area(system, T)  # a community of its own: its topics are this test's reports only
    issue = pending(system, own, 0)
    today = datetime.now(UTC).astimezone(SHANGHAI).date().isoformat()
    svc = intake(system, tenant=T)
    ask = pb.GetIssueStatsRequest(community_id=own.community_id, from_day=today, to_day=today)

    def topics() -> dict[tuple[str, str], int]:
        return {(t.kind, t.topic): t.count for t in svc.GetTopicCounts(ask).topics}

    counted = wait_for(lambda: topics().get(("category", CATEGORY)) == 1 and topics())
    assert counted[("grid", issue.place.grid_id)] == 1
    worker(system, own).DecideFiling(pb.DecideFilingRequest(id=issue.id, decision="decline", reason="abusive"))
    wait_for(lambda: topics() == {})
