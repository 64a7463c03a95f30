"""社区范围 in the services themselves, called over gRPC without the gateway: a community worker's principal
(signed with the services' real secret, as the gateway mints it) that asks for another community's issue,
task, call or org record is refused by intake, dispatch and org as they would refuse a missing one, its
lists hold its own community only, and a principal whose community claim is missing or forged is refused
outright. The gateway's own checks are tests/unit/test_gateway_community.py's; both together are
tests/e2e/test_community_scope.py's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
import pytest
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.dispatch.v1 import dispatch_pb2_grpc
from hongling.intake.v1 import intake_pb2 as ipb
from hongling.intake.v1 import intake_pb2_grpc
from hongling.org.v1 import org_pb2 as opb
from hongling.org.v1 import org_pb2_grpc

from services.common.grpc_server import ERROR_REASON_KEY, TENANT_KEY
from services.common.principal import AUDIENCE, ISSUER, METADATA_KEY
from tests.conftest import System, wait_for
from tests.integration.test_intake_service import PNG, Area, Stub, make_area, new_issue

T = "qiujiadian"
NOT_FOUND, DENIED = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True)
class Side:
    """One community of T: its area, an issue reported there (with a contact and a photo), its task and call."""

    area: Area
    issue: ipb.Issue
    task: dpb.Task
    whistle_id: str


@dataclass(frozen=True)
class Stubs:
    intake: Stub
    dispatch: Stub
    org: Stub


def stubs(system: System, role: str, community: str | None = None) -> Stubs:
    return Stubs(
        Stub(intake_pb2_grpc.IntakeServiceStub(system.channel("intake")), system, T, role, community=community),
        Stub(dispatch_pb2_grpc.DispatchServiceStub(system.channel("dispatch")), system, T, role, community=community),
        Stub(org_pb2_grpc.OrgServiceStub(system.channel("org")), system, T, role, community=community),
    )


def side(system: System, admin: Stubs) -> Side:
    area = make_area(system, T)
    issue = admin.intake.CreateIssue(
        new_issue(
            area.point(1),
            contact=ipb.Contact(name="钱大爷", phone="13912345678"),
            attachments=[ipb.AttachmentUpload(filename="灯.png", content_type="image/png", content=PNG)],
        )
    )

    def opened() -> dpb.Task | None:
        try:
            task: dpb.Task = admin.dispatch.GetTaskForIssue(dpb.GetTaskForIssueRequest(issue_id=issue.id))
        except grpc.RpcError as exc:
            assert exc.code() == NOT_FOUND
            return None
        return task if task.whistle_id else None

    task = wait_for(opened)
    return Side(area, issue, task, task.whistle_id)


@pytest.fixture(scope="module")
def sides(system: System) -> tuple[Side, Side]:
    admin = stubs(system, "subdistrict_admin")
    return side(system, admin), side(system, admin)


def refused(call: Any, code: grpc.StatusCode) -> tuple[str, str]:
    """(details, reason) of a call that must fail with `code`."""
    with pytest.raises(grpc.RpcError) as exc:
        call()
    err: Any = exc.value
    assert err.code() == code, (err.code(), err.details())
    return str(err.details()), str(dict(err.trailing_metadata() or ()).get(ERROR_REASON_KEY, ""))


def test_intake_answers_another_communitys_issue_as_a_missing_one(system: System, sides: tuple[Side, Side]) -> None:
    mine, theirs = sides
    worker = stubs(system, "community_worker", mine.area.community_id).intake
    assert worker.GetIssue(ipb.GetIssueRequest(id=mine.issue.id)).id == mine.issue.id
    b = theirs.issue.id
    missing = refused(lambda: worker.GetIssue(ipb.GetIssueRequest(id="no-such-issue")), NOT_FOUND)[0]
    for call in (
        lambda: worker.GetIssue(ipb.GetIssueRequest(id=b)),
        lambda: worker.RevealContact(ipb.RevealContactRequest(id=b)),
        # a stale version would be ABORTED for an issue it may see: here it must not tell that one exists
        lambda: worker.ReclassifyIssue(ipb.ReclassifyIssueRequest(id=b, urgency="major", reason="x", version=999)),
    ):
        details, _ = refused(call, NOT_FOUND)
        assert details == missing.replace("no-such-issue", b)
    photo = theirs.issue.attachments[0].id
    refused(lambda: worker.GetAttachment(ipb.GetAttachmentRequest(issue_id=b, attachment_id=photo)), NOT_FOUND)
    assert worker.RevealContact(ipb.RevealContactRequest(id=mine.issue.id)).name == "钱大爷"


def test_intake_lists_and_counts_hold_its_own_community(system: System, sides: tuple[Side, Side]) -> None:
    mine, theirs = sides
    worker = stubs(system, "community_worker", mine.area.community_id).intake
    both = worker.ListIssues(ipb.ListIssuesRequest(ids=[mine.issue.id, theirs.issue.id]))
    assert [i.id for i in both.issues] == [mine.issue.id]
    listed = wait_for(lambda: worker.ListIssues(ipb.ListIssuesRequest(page_size=100)).issues)  # the read model
    assert {i.place.community_id for i in listed} == {mine.area.community_id}
    assert worker.CountIssues(ipb.CountIssuesRequest()).total == len(listed)
    for call in (
        lambda: worker.ListIssues(ipb.ListIssuesRequest(community_id=theirs.area.community_id)),
        lambda: worker.CountIssues(ipb.CountIssuesRequest(community_id=theirs.area.community_id)),
    ):
        details, reason = refused(call, DENIED)
        assert reason == "community_out_of_scope" and "无权访问该社区数据" in details


def test_a_worker_reports_in_another_community_and_the_issue_leaves_its_hands(
    system: System, sides: tuple[Side, Side]
) -> None:
    mine, theirs = sides
    worker = stubs(system, "community_worker", mine.area.community_id).intake
    filed = worker.CreateIssue(new_issue(theirs.area.point(2), channel="household_visit", category="greening"))
    assert filed.place.community_id == theirs.area.community_id  # placed where it lies (首问负责)
    refused(lambda: worker.GetIssue(ipb.GetIssueRequest(id=filed.id)), NOT_FOUND)


def test_dispatch_answers_another_communitys_task_and_call_as_missing_ones(
    system: System, sides: tuple[Side, Side]
) -> None:
    mine, theirs = sides
    worker = stubs(system, "community_worker", mine.area.community_id).dispatch
    assert worker.GetTask(dpb.GetTaskRequest(id=mine.task.id)).id == mine.task.id
    t, w = theirs.task.id, theirs.whistle_id
    helper = dpb.Responder(kind="person", id="p-nobody")
    task_missing = refused(lambda: worker.GetTask(dpb.GetTaskRequest(id="no-such-task")), NOT_FOUND)[0]
    for call in (
        lambda: worker.GetTask(dpb.GetTaskRequest(id=t)),
        lambda: worker.ClaimTask(dpb.ClaimTaskRequest(task_id=t, claimant=helper)),
        lambda: worker.RankCandidates(dpb.RankCandidatesRequest(task_id=t)),
        lambda: worker.AssignTask(dpb.AssignTaskRequest(task_id=t, assignee=helper, reason="x", expected_version=999)),
        lambda: worker.RespondToAssignment(dpb.RespondToAssignmentRequest(task_id=t, accept=True, expected_version=9)),
        lambda: worker.TransitionTask(
            dpb.TransitionTaskRequest(task_id=t, action="cancel", reason="x", expected_version=999)
        ),
    ):
        details, _ = refused(call, NOT_FOUND)
        assert details == task_missing.replace("no-such-task", t)
    refused(lambda: worker.GetTaskForIssue(dpb.GetTaskForIssueRequest(issue_id=theirs.issue.id)), NOT_FOUND)
    call_missing = refused(lambda: worker.GetWhistle(dpb.GetWhistleRequest(id="no-such-call")), NOT_FOUND)[0]
    assert refused(lambda: worker.GetWhistle(dpb.GetWhistleRequest(id=w)), NOT_FOUND)[0] == call_missing.replace(
        "no-such-call", w
    )
    report = dpb.ReportInRequest(whistle_id=w, responder=helper, answer="decline", reason="x")
    refused(lambda: worker.ReportIn(report), NOT_FOUND)
    refused(lambda: worker.BlowWhistle(dpb.BlowWhistleRequest(issue_ids=[theirs.issue.id], note="x")), NOT_FOUND)
    admin = stubs(system, "subdistrict_admin").dispatch
    assert admin.GetTask(dpb.GetTaskRequest(id=t)).version == theirs.task.version  # nothing above changed it


def test_dispatch_lists_hold_its_own_community(system: System, sides: tuple[Side, Side]) -> None:
    mine, theirs = sides
    worker = stubs(system, "community_worker", mine.area.community_id).dispatch
    tasks = wait_for(lambda: worker.ListTasks(dpb.ListTasksRequest(page_size=200)).tasks)
    assert {t.community_id for t in tasks} == {mine.area.community_id}
    whistles = wait_for(lambda: worker.ListWhistles(dpb.ListWhistlesRequest(page_size=200)).whistles)
    assert {w.community_id for w in whistles} == {mine.area.community_id}
    other = theirs.area.community_id
    for call in (
        lambda: worker.ListTasks(dpb.ListTasksRequest(community_id=other)),
        lambda: worker.ListWhistles(dpb.ListWhistlesRequest(community_id=other)),
        lambda: worker.ListOverdue(dpb.ListOverdueRequest(community_id=other)),
    ):
        assert refused(call, DENIED)[1] == "community_out_of_scope"


def test_org_holds_a_worker_to_its_own_communitys_records(system: System, sides: tuple[Side, Side]) -> None:
    mine, theirs = sides
    worker = stubs(system, "community_worker", mine.area.community_id).org
    b = theirs.area
    missing = refused(lambda: worker.GetGrid(opb.GetRequest(id="no-such-grid")), NOT_FOUND)[0]
    assert refused(lambda: worker.GetGrid(opb.GetRequest(id=b.g1)), NOT_FOUND)[0] == missing.replace(
        "no-such-grid", b.g1
    )
    refused(lambda: worker.GetCommunity(opb.GetRequest(id=b.community_id)), NOT_FOUND)
    stale = opb.Grid(id=b.g1, community_id=b.community_id, name_zh="改名", boundary_geojson="{}", version=999)
    refused(lambda: worker.UpdateGrid(stale), NOT_FOUND)
    assert [c.id for c in worker.ListCommunities(opb.ListRequest(page_size=500)).items] == [mine.area.community_id]
    grids = worker.ListGrids(opb.ListRequest(page_size=500)).items
    assert {g.community_id for g in grids} == {mine.area.community_id} and len(grids) == 2
    assert (
        refused(lambda: worker.ListGrids(opb.ListRequest(filter={"community_id": b.community_id})), DENIED)[1]
        == "community_out_of_scope"
    )
    # New records: in another community (named, or derived from a parent there), a community, the tenant's list.
    for call in (
        lambda: worker.CreatePerson(opb.Person(community_id=b.community_id, name_zh="某", roles=["volunteer"])),
        lambda: worker.CreateCompound(
            opb.Compound(grid_id=b.g1, name_zh="越界小区", address="x", point=opb.Point(lat=b.lat, lon=b.lon))
        ),
        lambda: worker.CreateCommunity(opb.Community(name_zh="新社区")),
        lambda: worker.CreateResponsibilityItem(
            opb.ResponsibilityItem(domain="community", title_zh="越权条目", unit_kinds=["property_company"])
        ),
    ):
        assert refused(call, DENIED)[1] == "community_out_of_scope"
    assert worker.ListResponsibilityItems(opb.ListRequest(page_size=1)) is not None  # the tenant's list: read
    made = worker.CreatePerson(
        opb.Person(community_id=mine.area.community_id, name_zh="本社区志愿者", roles=["volunteer"])
    )
    assert made.community_id == mine.area.community_id
    sheet = f"社区编号,姓名,身份\n{b.community_id},越界人员,volunteer\n".encode()
    result = worker.ImportSheet(opb.ImportSheetRequest(entity="people", format="csv", content=sheet, dry_run=True))
    assert [e.row for e in result.errors] == [2] and "无权访问该社区数据" in result.errors[0].reason
    export = opb.ExportSheetRequest(entity="people", format="csv", filter={"community_id": b.community_id})
    assert refused(lambda: worker.ExportSheet(export), DENIED)[1] == "community_out_of_scope"


def forged(system: System, secret: str = "", **claims: Any) -> list[tuple[str, str]]:
    """Call metadata with a principal made by hand: these claims, signed with `secret` (the real one if "")."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "forger", "tenants": [T], "iat": now, "exp": now + 60, **claims}
    token = jwt.encode(body, secret or system.settings.principal_secret, algorithm="HS256")
    return [(METADATA_KEY, token), (TENANT_KEY, T)]


def test_a_principal_without_its_community_or_with_a_forged_one_is_unauthenticated(
    system: System, sides: tuple[Side, Side]
) -> None:
    mine, theirs = sides
    intake = intake_pb2_grpc.IntakeServiceStub(system.channel("intake"))
    get = ipb.GetIssueRequest(id=theirs.issue.id)
    for md, words in (
        (forged(system, role="community_worker"), "must carry it"),  # an old worker's token: no community
        (forged(system, role="subdistrict_admin", community=theirs.area.community_id), "only a community_worker"),
        (forged(system, "x" * 40, role="community_worker", community=theirs.area.community_id), "Signature"),
    ):
        details = refused(lambda md=md: intake.GetIssue(get, metadata=md, timeout=15), grpc.StatusCode.UNAUTHENTICATED)
        assert words in details[0]
    # Signed for its own community, it still cannot reach another's: the claim is what the service holds it to.
    own = forged(system, role="community_worker", community=mine.area.community_id)
    refused(lambda: intake.GetIssue(get, metadata=own, timeout=15), NOT_FOUND)
