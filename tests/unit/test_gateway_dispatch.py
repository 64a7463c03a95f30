"""The dispatch and webhook routes without the services: what the policy table says about them, what a
request must look like (400 naming the field, 428/412 for If-Match), which helper a member acts as (its
own, never one named in the body), how the service's answers become HTTP (409 for a lost claim race), and
the member credential itself (token, account, signed principal).

The service clients are a recording stand-in: each call's request and the principal it was made as are
kept, and the answer (or error) is the one the test sets. tests/e2e/test_dispatch_api.py runs the same
routes against the real services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from flask import Flask
from flask.testing import FlaskClient
from google.protobuf.message import Message
from hongling.dispatch.v1 import dispatch_pb2 as pb
from hongling.dispatch.v1 import webhooks_pb2 as wpb

from gateway.policy import POLICY
from gateway.protojson import to_json
from gateway.tokens import TokenFile, TokenStore, make_record
from gateway.users import InvalidAccount, Scope, check_scope, may_manage
from services.common import context
from services.common.errors import Unauthenticated
from services.common.grpc_server import ERROR_FIELD_KEY, ERROR_REASON_KEY
from services.common.principal import Principal, mint, parse_responder, verify
from tests.unit.test_gateway_openapi import validator

T = "taiqian"
OTHER = "daimiao"
BASE = f"/api/v1/tenants/{T}"
ME = ("person", "p-me")
SECRET = "s" * 40


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, reason: str = "", field: str = "") -> None:
        self._code, self._details = code, details
        self._trailing = tuple((k, v) for k, v in ((ERROR_REASON_KEY, reason), (ERROR_FIELD_KEY, field)) if v)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailing


@dataclass
class Call:
    method: str
    request: Message
    principal: Principal | None
    tenant: str | None


@dataclass
class Stub:
    """A service stub: records every call, answers from `answers` (a message, an exception or a function)."""

    calls: list[Call] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, method: str) -> Callable[[Message], Message]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(request: Message, **_kw: Any) -> Message:
            self.calls.append(Call(method, request, context.current_principal.get(), context.current_tenant.get()))
            answer = self.answers.get(method)
            if callable(answer) and not isinstance(answer, Message):
                answer = answer(request)
            if isinstance(answer, Exception):
                raise answer
            if answer is None:
                raise AssertionError(f"the test set no answer for {method}")
            return cast(Message, answer)

        return call

    def last(self, method: str) -> Call:
        return [c for c in self.calls if c.method == method][-1]


class FakeClients:
    def __init__(self) -> None:
        self.dispatch = Stub()
        self.webhooks = Stub()

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        return {}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"these tests call only dispatch and webhooks (tried clients.{name})")


@pytest.fixture
def fake() -> FakeClients:  # the app and client fixtures (tests/unit/conftest.py) are built around it
    return FakeClients()


COMMUNITY = "c-1"  # the community of this module's community worker


def bearer(tokens: Path, role: str, tenant: str = T, responder: str | None = None) -> dict[str, str]:
    community = COMMUNITY if role == "community_worker" else None
    token, _ = TokenFile(tokens).create(f"unit-{role}", role, [tenant], responder=responder, community=community)
    return {"Authorization": f"Bearer {token}"}


def member(tokens: Path, responder: str = "person:p-me") -> dict[str, str]:
    return bearer(tokens, "member", T, responder)


def task(
    version: int = 3, assignee: tuple[str, str] | None = ME, response: str = "", status: str = "assigned"
) -> pb.Task:
    t = pb.Task(id="tk-1", tenant=T, issue_id="i-1", status=status, version=version)
    if assignee is not None:
        t.assignment.CopyFrom(pb.Assignment(kind=assignee[0], id=assignee[1], response=response))
        t.crew.append(pb.CrewMember(kind=assignee[0], id=assignee[1], role="lead"))
    return t


def error(resp: Any) -> dict[str, Any]:
    body = resp.get_json()
    assert body is not None and "error" in body, resp.data
    return cast(dict[str, Any], body["error"])


# ---------------------------------------------------------------- the policy table

STAFF = {"community_worker", "subdistrict_admin"}
DISPATCHERS = STAFF | {"member"}
# Written out by hand from the design (issue 6), not read from gateway/policy.py.
EXPECTED: dict[str, tuple[set[str], bool]] = {
    "dispatch.list_whistles": (DISPATCHERS, True),
    "dispatch.get_whistle": (DISPATCHERS, True),
    "dispatch.blow_whistle": (STAFF, True),
    "dispatch.report_in": (DISPATCHERS, True),
    "dispatch.list_tasks": (STAFF, True),
    "dispatch.get_task": (STAFF, True),
    "dispatch.list_overdue": (STAFF, True),
    "dispatch.my_tasks": ({"member"}, True),
    "dispatch.claim_task": (DISPATCHERS, True),
    "dispatch.rank_candidates": (STAFF, True),
    "dispatch.assign_task": (STAFF, True),
    "dispatch.respond_to_assignment": (DISPATCHERS, True),
    "dispatch.transition_task": (DISPATCHERS, True),
    "dispatch.get_rules": (STAFF, True),
    "dispatch.put_rules": ({"subdistrict_admin"}, True),
    "dispatch.list_overdue_district": ({"ops"}, False),
    "webhooks.register_webhook": ({"subdistrict_admin"}, True),
    "webhooks.list_webhooks": ({"subdistrict_admin"}, True),
    "webhooks.get_webhook": ({"subdistrict_admin"}, True),
    "webhooks.set_webhook_active": ({"subdistrict_admin"}, True),
    "webhooks.delete_webhook": ({"subdistrict_admin"}, True),
    "webhooks.list_deliveries": ({"subdistrict_admin"}, True),
    "webhooks.list_webhooks_district": ({"ops"}, False),
    "webhooks.list_deliveries_district": ({"ops"}, False),
}


def test_every_dispatch_and_webhook_route_has_the_designed_line(app: Flask) -> None:
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.split(".")[0] in ("dispatch", "webhooks")}
    assert endpoints == EXPECTED.keys()
    for endpoint, (roles, scoped) in EXPECTED.items():
        rule = POLICY[endpoint]
        assert (set(rule.roles), rule.tenant_scoped, rule.grant) == (roles, scoped, ""), endpoint


def test_members_reach_only_the_dispatch_routes_they_need() -> None:
    member_routes = {e for e, r in POLICY.items() if "member" in r.roles}
    dispatch = {e for e in member_routes if e.startswith("dispatch.")}
    assert dispatch == {e for e, (roles, _) in EXPECTED.items() if "member" in roles}
    assert (
        member_routes - dispatch
        <= {
            "healthz",
            "readyz",
            "tenants",
            "docs.openapi_json",
            "docs.asyncapi_json",
            "docs.docs_page",
            "docs.docs_asset",
            "portal.root",
            "portal.page",
            "auth.login",
            "auth.me",
            "auth.logout",
        }
        | {e for e in POLICY if e.startswith("open311.") and e != "open311.create_request"}
        | ALLIANCE_MEMBER_ROUTES
        | VERIFICATION_MEMBER_ROUTES
        | {"ratings.rate_unit"}  # an alliance member rates units of its community as itself (评单)
        | {e for e in POLICY if e.startswith("publications.public_")}  # released publications: anyone reads them
    )


# Members read posts and activities, claim, sign up and check in as themselves; read the meetings they are
# invited to, check in and propose items; pledge for their unit and read their own hours
# (tests/e2e/test_gateway_policy.py pins their roles family by family).
ALLIANCE_MEMBER_ROUTES = {
    "alliance_meetings.get_meeting",
    "alliance_meetings.check_in",
    "alliance_meetings.propose_item",
    "alliance_meetings.list_attendance",
    "alliance_ledger.list_pledges",
    "alliance_ledger.get_pledge",
    "alliance_ledger.create_pledge",
    "alliance_ledger.list_resource_entries",
    "alliance_ledger.withdraw_pledge",
    "alliance_ledger.get_hours",
    "alliance_ledger.list_person_hours",
    "alliance_posts.list_posts",
    "alliance_posts.get_post",
    "alliance_posts.claim_shift",
    "alliance_posts.release_claim",
    "alliance_posts.check_in",
    "alliance_posts.list_claims",
    "alliance_activities.list_activities",
    "alliance_activities.get_activity",
    "alliance_activities.sign_up",
    "alliance_activities.withdraw",
    "alliance_activities.record_attendance",
    "alliance_activities.list_signups",
}
# A member named as a reviewer of a review round (验单) reads that round and votes as itself.
VERIFICATION_MEMBER_ROUTES = {"verification.get_round", "verification.cast_vote"}


def test_residents_and_the_public_get_no_dispatch_route(client: FlaskClient, tokens: Path) -> None:
    for endpoint in EXPECTED:
        assert not {"resident", "public", "district_department", "district_approver"} & POLICY[endpoint].roles
    resp = client.get(f"{BASE}/whistles", headers=bearer(tokens, "resident"))
    assert resp.status_code == 403 and "'resident'" in error(resp)["message"]
    assert client.get(f"{BASE}/tasks/overdue").status_code == 401
    resp = client.get(f"/api/v1/tenants/{OTHER}/tasks", headers=bearer(tokens, "subdistrict_admin"))
    assert resp.status_code == 403 and error(resp)["code"] == "tenant_out_of_scope"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("whistles", {"issue_ids": []}, "issue_ids"),
        ("whistles", {"issue_ids": ["i-1"], "targets": [{"kind": "person"}]}, "targets.0.id"),
        ("whistles", {"issue_ids": ["i-1"], "colour": "red"}, "colour"),
        ("whistles/w-1/report-ins", {"answer": "maybe", "responder": {"kind": "person", "id": "p"}}, "answer"),
        (
            "whistles/w-1/report-ins",
            {"answer": "propose", "reason": "x", "responder": {"kind": "person", "id": "p"}},
            "proposed",
        ),
        ("whistles/w-1/report-ins", {"answer": "accept"}, "responder"),  # staff name the helper they record for
        ("tasks/tk-1/claims", {"role": "boss", "claimant": {"kind": "person", "id": "p"}}, "role"),
        ("tasks/tk-1/claims", {}, "claimant"),
    ],
)
def test_bodies_that_do_not_fit_are_400_naming_the_field(
    client: FlaskClient, tokens: Path, fake: FakeClients, path: str, body: dict[str, Any], field: str
) -> None:
    resp = client.post(f"{BASE}/{path}", json=body, headers=bearer(tokens, "subdistrict_admin"))
    assert resp.status_code == 400, resp.data
    assert error(resp)["code"] == "invalid_argument" and error(resp)["field"] == field
    assert not fake.dispatch.calls  # refused before any service call


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("tasks/tk-1/assignment", {"assignee": {"kind": "person", "id": "p"}}),
        ("tasks/tk-1/assignment/response", {"answer": "accept"}),
        ("tasks/tk-1/transitions", {"action": "start"}),
    ],
)
def test_task_changes_need_if_match(
    client: FlaskClient, tokens: Path, fake: FakeClients, path: str, body: dict[str, Any]
) -> None:
    h = bearer(tokens, "subdistrict_admin")
    resp = client.post(f"{BASE}/{path}", json=body, headers=h)
    assert resp.status_code == 428 and error(resp)["field"] == "If-Match"
    resp = client.post(f"{BASE}/{path}", json=body, headers={**h, "If-Match": "3"})
    assert resp.status_code == 400 and error(resp)["field"] == "If-Match"
    assert not fake.dispatch.calls


def test_unknown_actions_and_query_values_are_400(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    h = bearer(tokens, "subdistrict_admin")
    resp = client.post(f"{BASE}/tasks/tk-1/transitions", json={"action": "fly"}, headers={**h, "If-Match": '"3"'})
    assert resp.status_code == 400 and error(resp)["field"] == "action"
    resp = client.post(f"{BASE}/tasks/tk-1/assignment", json={"reason": "x"}, headers={**h, "If-Match": '"3"'})
    assert resp.status_code == 400 and error(resp)["field"] == "assignee"
    resp = client.post(
        f"{BASE}/tasks/tk-1/assignment/response", json={"answer": "yes"}, headers={**h, "If-Match": '"3"'}
    )
    assert resp.status_code == 400 and error(resp)["field"] == "answer"
    for query, name in (("page_size=ten", "page_size"), ("overdue=maybe", "overdue")):
        resp = client.get(f"{BASE}/tasks?{query}", headers=h)
        assert resp.status_code == 400 and error(resp)["field"] == name
    resp = client.get(f"{BASE}/tasks/overdue?deadline=tomorrow", headers=h)
    assert resp.status_code == 400 and error(resp)["field"] == "deadline"
    assert not fake.dispatch.calls


# ---------------------------------------------------------------- what reaches the service


def test_staff_calls_carry_their_principal_the_tenant_and_the_query(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    fake.dispatch.answers["ListTasks"] = pb.ListTasksResponse(tasks=[task()], next_page_token="nx")
    resp = client.get(
        f"{BASE}/tasks?status=open&assignee=p-9&overdue=true&page_size=5", headers=bearer(tokens, "community_worker")
    )
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    assert body["next_page_token"] == "nx" and body["tasks"][0]["id"] == "tk-1"
    call = fake.dispatch.last("ListTasks")
    req = cast(pb.ListTasksRequest, call.request)
    assert (req.status, req.assignee_id, req.overdue, req.page_size) == ("open", "p-9", True, 5)
    assert call.tenant == T and call.principal is not None
    assert (call.principal.role, call.principal.tenants) == ("community_worker", (T,))
    # A community worker's principal carries its community, and its list is its community's (社区范围).
    assert call.principal.community == COMMUNITY and req.community_id == COMMUNITY


def test_a_task_has_its_version_as_etag_and_if_match_becomes_the_expected_version(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    h = bearer(tokens, "subdistrict_admin")
    fake.dispatch.answers["GetTask"] = task(version=7)
    resp = client.get(f"{BASE}/tasks/tk-1", headers=h)
    assert resp.status_code == 200 and resp.headers["ETag"] == '"7"'
    assert resp.get_json()["assignment"]["id"] == "p-me"
    fake.dispatch.answers["TransitionTask"] = task(version=8, status="in_progress")
    resp = client.post(
        f"{BASE}/tasks/tk-1/transitions", json={"action": "cancel", "reason": "重复"}, headers={**h, "If-Match": '"7"'}
    )
    assert resp.status_code == 200 and resp.headers["ETag"] == '"8"'
    req = cast(pb.TransitionTaskRequest, fake.dispatch.last("TransitionTask").request)
    assert (req.task_id, req.action, req.reason, req.expected_version) == ("tk-1", "cancel", "重复", 7)


def test_service_refusals_become_http(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    h = bearer(tokens, "subdistrict_admin")
    fake.dispatch.answers["ClaimTask"] = FakeRpcError(
        grpc.StatusCode.FAILED_PRECONDITION, "名额已满 (no places left)", reason="full"
    )
    resp = client.post(f"{BASE}/tasks/tk-1/claims", json={"claimant": {"kind": "person", "id": "p-2"}}, headers=h)
    assert resp.status_code == 409 and "名额已满" in error(resp)["message"] and error(resp)["code"] == "full"
    fake.dispatch.answers["TransitionTask"] = FakeRpcError(grpc.StatusCode.ABORTED, "version 7 is not current")
    resp = client.post(f"{BASE}/tasks/tk-1/transitions", json={"action": "start"}, headers={**h, "If-Match": '"7"'})
    assert resp.status_code == 412 and error(resp)["field"] == "If-Match"
    fake.dispatch.answers["GetWhistle"] = FakeRpcError(grpc.StatusCode.NOT_FOUND, "no call w-9", field="id")
    resp = client.get(f"{BASE}/whistles/w-9", headers=h)
    assert resp.status_code == 404 and error(resp)["field"] == "id"
    fake.dispatch.answers["AssignTask"] = FakeRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, "an override needs a reason", field="reason"
    )
    resp = client.post(
        f"{BASE}/tasks/tk-1/assignment",
        json={"assignee": {"kind": "person", "id": "p-2"}},
        headers={**h, "If-Match": '"7"'},
    )
    assert resp.status_code == 400 and error(resp)["field"] == "reason"


def test_staff_record_a_report_in_for_the_helper_they_name(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    fake.dispatch.answers["ReportIn"] = pb.Whistle(id="w-1", version=4)
    body = {
        "answer": "propose",
        "reason": "他们更近",
        "responder": {"kind": "unit", "id": "mu-1"},
        "proposed": {"kind": "team", "id": "tm-2"},
    }
    resp = client.post(f"{BASE}/whistles/w-1/report-ins", json=body, headers=bearer(tokens, "subdistrict_admin"))
    assert resp.status_code == 201 and resp.headers["Location"] == f"{BASE}/whistles/w-1"
    req = cast(pb.ReportInRequest, fake.dispatch.last("ReportIn").request)
    assert (req.responder.kind, req.responder.id, req.answer) == ("unit", "mu-1", "propose")
    assert (req.proposed.kind, req.proposed.id, req.expected_version) == ("team", "tm-2", 0)


# ---------------------------------------------------------------- members act as themselves


def test_a_member_reports_in_and_claims_as_its_own_helper(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    h = member(tokens)
    fake.dispatch.answers["ReportIn"] = pb.Whistle(id="w-1", version=2)
    resp = client.post(f"{BASE}/whistles/w-1/report-ins", json={"answer": "accept"}, headers=h)
    assert resp.status_code == 201, resp.data
    call = fake.dispatch.last("ReportIn")
    req = cast(pb.ReportInRequest, call.request)
    assert (req.responder.kind, req.responder.id) == ME
    assert call.principal is not None and call.principal.responder == ME and call.principal.role == "member"
    fake.dispatch.answers["ClaimTask"] = task()
    resp = client.post(f"{BASE}/tasks/tk-1/claims", json={"role": "assistant"}, headers=h)
    assert resp.status_code == 201 and resp.headers["Location"] == f"{BASE}/tasks/tk-1"
    req2 = cast(pb.ClaimTaskRequest, fake.dispatch.last("ClaimTask").request)
    assert (req2.claimant.kind, req2.claimant.id, req2.role) == (*ME, "assistant")
    # Naming itself is fine; naming another helper is refused before the service is asked.
    same = {"answer": "decline", "reason": "忙", "responder": {"kind": "person", "id": "p-me"}}
    assert client.post(f"{BASE}/whistles/w-1/report-ins", json=same, headers=h).status_code == 201
    calls = len(fake.dispatch.calls)
    other = {"answer": "accept", "responder": {"kind": "person", "id": "p-other"}}
    resp = client.post(f"{BASE}/whistles/w-1/report-ins", json=other, headers=h)
    assert (
        resp.status_code == 403 and error(resp)["code"] == "not_your_responder" and error(resp)["field"] == "responder"
    )
    resp = client.post(f"{BASE}/tasks/tk-1/claims", json={"claimant": {"kind": "team", "id": "p-me"}}, headers=h)
    assert resp.status_code == 403 and error(resp)["field"] == "claimant"
    assert len(fake.dispatch.calls) == calls


def test_a_member_answers_its_assignment_as_itself_and_the_services_refusal_is_403(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    h = {**member(tokens), "If-Match": '"3"'}
    fake.dispatch.answers["RespondToAssignment"] = task(version=4, status="open", response="declined")
    resp = client.post(
        f"{BASE}/tasks/tk-1/assignment/response", json={"answer": "decline", "reason": "外出"}, headers=h
    )
    assert resp.status_code == 200 and resp.headers["ETag"] == '"4"'
    call = fake.dispatch.last("RespondToAssignment")
    req = cast(pb.RespondToAssignmentRequest, call.request)
    assert (req.task_id, req.accept, req.reason, req.expected_version) == ("tk-1", False, "外出", 3)
    # The service checks on the task it writes that the assignment is the member's own helper's.
    assert call.principal is not None and (call.principal.role, call.principal.responder) == ("member", ME)
    fake.dispatch.answers["RespondToAssignment"] = FakeRpcError(
        grpc.StatusCode.PERMISSION_DENIED,
        "仅限派给本单位/本人的任务 (a member answers only an assignment to itself)",
        reason="not_your_task",
    )
    resp = client.post(f"{BASE}/tasks/tk-1/assignment/response", json={"answer": "accept"}, headers=h)
    assert resp.status_code == 403 and error(resp)["code"] == "not_your_task"


def test_a_member_only_starts_and_finishes(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    h = {**member(tokens), "If-Match": '"5"'}
    for action in ("verify", "reject", "reopen", "cancel"):
        resp = client.post(f"{BASE}/tasks/tk-1/transitions", json={"action": action, "reason": "x"}, headers=h)
        assert resp.status_code == 403 and error(resp)["field"] == "action", action
    assert not fake.dispatch.calls
    fake.dispatch.answers["TransitionTask"] = task(version=6, status="in_progress")
    resp = client.post(f"{BASE}/tasks/tk-1/transitions", json={"action": "start"}, headers=h)
    assert resp.status_code == 200 and resp.get_json()["status"] == "in_progress"
    call = fake.dispatch.last("TransitionTask")
    assert cast(pb.TransitionTaskRequest, call.request).expected_version == 5
    assert call.principal is not None and call.principal.responder == ME


def test_my_tasks_are_the_members_own(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    mine, same_id_other_kind = task(assignee=ME), task(assignee=("team", "p-me"))
    same_id_other_kind.id = "tk-2"
    fake.dispatch.answers["ListTasks"] = pb.ListTasksResponse(tasks=[mine, same_id_other_kind])
    resp = client.get(f"{BASE}/tasks/mine?status=in_progress&assignee=p-other", headers=member(tokens))
    assert resp.status_code == 200
    assert [t["id"] for t in resp.get_json()["tasks"]] == ["tk-1"] and resp.get_json()["next_page_token"] is None
    req = cast(pb.ListTasksRequest, fake.dispatch.last("ListTasks").request)
    assert (req.assignee_id, req.status) == ("p-me", "in_progress")  # ?assignee= of the caller is ignored
    assert client.get(f"{BASE}/tasks/mine", headers=bearer(tokens, "community_worker")).status_code == 403


def test_members_may_not_blow_assign_rank_or_set_rules(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    h = {**member(tokens), "If-Match": '"1"'}
    for method, path, body in (
        ("POST", "whistles", {"issue_ids": ["i-1"]}),
        ("POST", "tasks/tk-1/assignment", {"assignee": {"kind": "person", "id": "p-me"}}),
        ("GET", "tasks/tk-1/candidates", None),
        ("GET", "tasks", None),
        ("GET", "tasks/tk-1", None),
        ("GET", "tasks/overdue", None),
        ("PUT", "dispatch-rules", {}),
        ("GET", "webhooks", None),
    ):
        resp = client.open(f"{BASE}/{path}", method=method, json=body, headers=h)
        assert resp.status_code == 403 and "'member'" in error(resp)["message"], path
    resp = client.get(f"/api/v1/tenants/{OTHER}/whistles", headers=member(tokens))
    assert resp.status_code == 403 and error(resp)["code"] == "tenant_out_of_scope"
    assert not fake.dispatch.calls


# ---------------------------------------------------------------- rules and webhooks


def test_rules_put_takes_the_read_rules_back_with_if_match(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    h = bearer(tokens, "subdistrict_admin")
    rules = pb.DispatchRules(
        call_types=[pb.CallTypeRule(call_type="emergency", name_zh="紧急集结号", report_in_minutes=30)],
        matching_targets=5,
        version=0,
    )
    fake.dispatch.answers["GetDispatchRules"] = rules
    read = client.get(f"{BASE}/dispatch-rules", headers=h)
    assert read.status_code == 200 and read.headers["ETag"] == '"0"'
    body = read.get_json()
    body["call_types"][0]["report_in_minutes"] = 20
    fake.dispatch.answers["PutDispatchRules"] = lambda req: pb.DispatchRules(
        call_types=req.call_types, matching_targets=req.matching_targets, version=1
    )
    assert client.put(f"{BASE}/dispatch-rules", json=body, headers=h).status_code == 428
    resp = client.put(f"{BASE}/dispatch-rules", json=body, headers={**h, "If-Match": '"0"'})
    assert resp.status_code == 200 and resp.headers["ETag"] == '"1"'
    sent = cast(pb.DispatchRules, fake.dispatch.last("PutDispatchRules").request)
    assert sent.version == 0 and sent.call_types[0].report_in_minutes == 20
    resp = client.put(f"{BASE}/dispatch-rules", json={"call_types": "all"}, headers={**h, "If-Match": '"1"'})
    assert resp.status_code == 400 and error(resp)["field"] == "call_types"
    worker = client.put(
        f"{BASE}/dispatch-rules", json=body, headers={**bearer(tokens, "community_worker"), "If-Match": '"1"'}
    )
    assert worker.status_code == 403


def test_the_webhook_secret_is_in_the_registration_answer_only(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    h = bearer(tokens, "subdistrict_admin")
    hook = wpb.Webhook(id="wh_1", tenant=T, url="https://sms.example/hook", event_types=["WhistleBlown"], active=True)
    hook.secret_hint = "whsec_abcd"
    fake.webhooks.answers["RegisterWebhook"] = wpb.RegisterWebhookResponse(webhook=hook, secret="whsec_abcd" + "x" * 30)
    body = {"url": "https://sms.example/hook", "event_types": ["WhistleBlown"], "description": "短信网关"}
    resp = client.post(f"{BASE}/webhooks", json=body, headers=h)
    assert resp.status_code == 201 and resp.get_json()["secret"].startswith("whsec_abcd")
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Location"] == f"{BASE}/webhooks/wh_1"
    fake.webhooks.answers["GetWebhook"] = hook
    got = client.get(f"{BASE}/webhooks/wh_1", headers=h)
    assert got.status_code == 200 and "secret" not in got.get_json() and got.get_json()["secret_hint"] == "whsec_abcd"
    for bad, name in (({"url": "x", "event_types": []}, "event_types"), ({"event_types": ["x"]}, "url")):
        resp = client.post(f"{BASE}/webhooks", json=bad, headers=h)
        assert resp.status_code == 400 and error(resp)["field"] == name
    resp = client.put(f"{BASE}/webhooks/wh_1/active", json={"active": "no"}, headers=h)
    assert resp.status_code == 400 and error(resp)["field"] == "active"
    fake.webhooks.answers["DeleteWebhook"] = wpb.DeleteWebhookResponse()
    assert client.delete(f"{BASE}/webhooks/wh_1", headers=h).status_code == 204


def test_ops_read_a_tenants_webhooks_and_overdue_list_district_wide_in_scope(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    ops = bearer(tokens, "ops", T)
    fake.webhooks.answers["ListWebhooks"] = wpb.ListWebhooksResponse()
    fake.dispatch.answers["ListOverdue"] = pb.ListTasksResponse()
    assert client.get(f"/api/v1/webhooks?tenant={T}", headers=ops).get_json() == {"webhooks": []}
    assert fake.webhooks.last("ListWebhooks").tenant == T
    resp = client.get(f"/api/v1/dispatch/overdue?tenant={T}&deadline=completion", headers=ops)
    assert (
        resp.status_code == 200
        and cast(pb.ListOverdueRequest, fake.dispatch.last("ListOverdue").request).deadline == "completion"
    )
    for path in ("/api/v1/webhooks", "/api/v1/dispatch/overdue"):
        assert error(client.get(path, headers=ops))["field"] == "tenant"
        resp = client.get(f"{path}?tenant={OTHER}", headers=ops)
        assert resp.status_code == 403 and error(resp)["code"] == "tenant_out_of_scope"
    # Ops never manage a tenant's registrations (no tenant-scoped route), and admins use the tenant routes.
    assert client.get(f"{BASE}/webhooks", headers=ops).status_code == 403
    assert client.get(f"/api/v1/webhooks?tenant={T}", headers=bearer(tokens, "subdistrict_admin")).status_code == 403


# ---------------------------------------------------------------- the member credential


def test_a_member_token_is_bound_to_one_helper_in_one_tenant(tokens: Path) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(days=1)
    for responder, tenants, message in (
        (None, [T], "needs --responder"),
        ("person:p-1", ["*"], "exactly one tenant"),
        ("person:p-1", [T, OTHER], "exactly one tenant"),
        ("boss:p-1", [T], "kind:id"),
        ("person:", [T], "kind:id"),
    ):
        with pytest.raises(ValueError, match=message):
            make_record("m", "member", tenants, later, now, responder)
    with pytest.raises(ValueError, match="only a member"):
        make_record("w", "community_worker", [T], later, now, "person:p-1")
    token, record = TokenFile(tokens).create("volunteer-li", "member", [T], responder="unit:mu-7")
    assert record.responder == ("member_unit", "mu-7")  # "unit" is read as member_unit
    assert 'responder = "member_unit:mu-7"' in tokens.read_text()
    found = TokenStore(str(tokens)).authenticate(token)
    assert found.principal() == Principal("volunteer-li", "member", (T,), responder=("member_unit", "mu-7"))


def test_the_signed_principal_carries_the_responder_and_a_member_needs_one() -> None:
    p = Principal(sub="volunteer-li", role="member", tenants=(T,), responder=("team", "tm-3"))
    assert verify(mint(p, SECRET), SECRET) == p
    staff = Principal(sub="w", role="subdistrict_admin", tenants=(T,))
    assert verify(mint(staff, SECRET), SECRET).responder is None  # tokens without the claim read as before
    with pytest.raises(Unauthenticated, match="member"):
        verify(mint(Principal(sub="m", role="member", tenants=(T,)), SECRET), SECRET)
    with pytest.raises(Unauthenticated, match="member"):
        verify(mint(Principal(sub="w", role="subdistrict_admin", responder=("person", "p")), SECRET), SECRET)
    assert parse_responder(" person : p-1 ") == ("person", "p-1")


def test_a_member_account_names_its_helper_and_subdistrict_admins_manage_it() -> None:
    scope = check_scope("member", [T], responder="person:p-9")
    assert scope == Scope("member", (T,), None, ("person", "p-9"))
    assert scope.as_dict()["responder"] == "person:p-9"
    for args, name in (
        (("member", [T]), "responder"),
        (("member", [T, OTHER], None, "person:p-9"), "tenants"),
        (("member", [T], None, "ship:1"), "responder"),
        (("resident", [T], None, "person:p-9"), "responder"),
    ):
        with pytest.raises(InvalidAccount) as exc:
            check_scope(*args)
        assert exc.value.field == name
    assert may_manage(Principal("a", "subdistrict_admin", (T,)), scope)
    assert not may_manage(Principal("a", "subdistrict_admin", (OTHER,)), scope)


# ---------------------------------------------------------------- the OpenAPI description


def test_the_openapi_document_describes_the_dispatch_routes_as_they_answer(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    transitions = paths["/api/v1/tenants/{tenant}/tasks/{task_id}/transitions"]["post"]
    assert transitions["x-hongling-roles"] == ["community_worker", "subdistrict_admin", "member"]
    assert {"$ref": "#/components/parameters/If-Match"} in transitions["parameters"]
    assert transitions["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TransitionIn"
    }
    assert set(spec["components"]["schemas"]["TransitionIn"]["properties"]["action"]["enum"]) == {
        "start",
        "done",
        "verify",
        "reject",
        "reopen",
        "cancel",
    }
    report = paths["/api/v1/tenants/{tenant}/whistles/{whistle_id}/report-ins"]["post"]
    assert next(p for p in report["parameters"] if p.get("name") == "If-Match").get("required") is not True
    assert paths["/api/v1/dispatch/overdue"]["get"]["x-hongling-roles"] == ["ops"]
    assert "secret" in spec["components"]["schemas"]["dispatch.v1.RegisterWebhookResponse"]["properties"]
    assert "secret" not in spec["components"]["schemas"]["dispatch.v1.Webhook"]["properties"]
    # What the routes print (protojson) fits the documented answers.
    whistle = pb.Whistle(id="w-1", call_type="emergency", tasks=[pb.WhistleTask(task_id="tk-1", places_left=2)])
    whistle.targets.append(pb.Target(kind="member_unit", id="mu-1", reasons=["服务本网格"]))
    samples = {
        ("/api/v1/tenants/{tenant}/tasks/{task_id}", "get"): to_json(task()),
        ("/api/v1/tenants/{tenant}/whistles", "get"): {
            "whistles": [to_json(whistle)],
            "next_page_token": None,
        },
        ("/api/v1/tenants/{tenant}/tasks/mine", "get"): {"tasks": [], "next_page_token": "x"},
        ("/api/v1/tenants/{tenant}/webhooks", "get"): {"webhooks": [to_json(wpb.Webhook(id="wh_1"))]},
    }
    for (path, method), body in samples.items():
        status = "200"
        v = validator(spec, "paths", path, method, "responses", status, "content", "application/json", "schema")
        errors = [e.message for e in v.iter_errors(body)]
        assert not errors, (path, errors)
