"""社区范围 at the gateway, without the services: a community worker's lists carry its community, and a
request naming a record of another community is refused before the view, so the service is never asked
to act on it (the services' own checks are tests/integration/test_community_scope.py's).

The service clients are a recording stand-in: each call's request and principal are kept and the answer
is the one the test sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from flask.testing import FlaskClient
from google.protobuf.message import Message
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.intake.v1 import intake_pb2 as ipb
from hongling.org.v1 import org_pb2 as opb

from gateway.tokens import TokenFile
from services.common import context
from services.common.community import not_found_message
from services.common.grpc_server import ERROR_FIELD_KEY, ERROR_REASON_KEY
from services.common.principal import Principal

T = "taiqian"
BASE = f"/api/v1/tenants/{T}"
OWN, OTHER = "c-1", "c-2"


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


@dataclass
class Stub:
    """Records every call; answers from `answers` (a message, an exception, or a function of the request)."""

    calls: list[Call] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, method: str) -> Callable[[Message], Message]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(request: Message, **_kw: Any) -> Message:
            self.calls.append(Call(method, request, context.current_principal.get()))
            answer = self.answers.get(method)
            if callable(answer) and not isinstance(answer, Message):
                answer = answer(request)
            if isinstance(answer, Exception):
                raise answer
            if answer is None:
                raise AssertionError(f"the test set no answer for {method}")
            return cast(Message, answer)

        return call

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def last(self, method: str) -> Call:
        return [c for c in self.calls if c.method == method][-1]


class FakeClients:
    def __init__(self) -> None:
        self.intake, self.dispatch, self.org = Stub(), Stub(), Stub()

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        return {}

    def all_methods(self) -> list[str]:
        return self.intake.methods() + self.dispatch.methods() + self.org.methods()


@pytest.fixture
def fake() -> FakeClients:  # the app and client fixtures (tests/unit/conftest.py) are built around it
    return FakeClients()


def worker(tokens: Path, community: str = OWN) -> dict[str, str]:
    token, _ = TokenFile(tokens).create("unit-worker", "community_worker", [T], community=community)
    return {"Authorization": f"Bearer {token}"}


def admin(tokens: Path) -> dict[str, str]:
    token, _ = TokenFile(tokens).create("unit-admin", "subdistrict_admin", [T])
    return {"Authorization": f"Bearer {token}"}


def error(resp: Any) -> dict[str, Any]:
    body = resp.get_json()
    assert body is not None and "error" in body, resp.data
    return cast(dict[str, Any], body["error"])


def issue(issue_id: str, community: str) -> ipb.Issue:
    return ipb.Issue(id=issue_id, tenant=T, version=2, place=ipb.Place(community_id=community))


def task(task_id: str, community: str) -> dpb.Task:
    return dpb.Task(id=task_id, tenant=T, issue_id="i-1", status="open", community_id=community, version=3)


# ---------------------------------------------------------------- lists


def test_a_community_workers_lists_carry_its_community_to_the_service(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    h = worker(tokens)
    fake.intake.answers |= {"ListIssues": ipb.ListIssuesResponse(), "CountIssues": ipb.CountIssuesResponse()}
    fake.dispatch.answers |= {"ListTasks": dpb.ListTasksResponse(), "ListWhistles": dpb.ListWhistlesResponse()}
    fake.dispatch.answers["ListOverdue"] = dpb.ListTasksResponse()
    fake.org.answers["ListPeople"] = opb.ListPeopleResponse()
    fake.org.answers["ExportSheet"] = opb.ExportSheetResponse(filename="p.csv", content=b"x", rows=0)
    for path in ("issues", "issue-counts", "tasks", "whistles", "tasks/overdue", "org/people"):
        assert client.get(f"{BASE}/{path}", headers=h).status_code == 200, path
    assert client.get(f"{BASE}/org/people/export?format=csv", headers=h).status_code == 200
    sent = [
        fake.intake.last("ListIssues").request,
        fake.intake.last("CountIssues").request,
        fake.dispatch.last("ListTasks").request,
        fake.dispatch.last("ListWhistles").request,
        fake.dispatch.last("ListOverdue").request,
    ]
    assert [r.community_id for r in sent] == [OWN] * 5
    for method in ("ListPeople", "ExportSheet"):
        assert dict(fake.org.last(method).request.filter) == {"community_id": OWN}, method
    principal = fake.dispatch.last("ListTasks").principal
    assert principal is not None and principal.community == OWN  # the services hold it to it too


def test_a_list_naming_another_community_is_403_before_any_service_call(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    for path in ("issues", "issue-counts", "tasks", "whistles", "tasks/overdue", "org/people", "org/people/export"):
        resp = client.get(f"{BASE}/{path}?community_id={OTHER}", headers=worker(tokens))
        assert resp.status_code == 403, path
        assert error(resp)["code"] == "community_out_of_scope" and error(resp)["field"] == "community_id"
        assert "无权访问该社区数据" in error(resp)["message"] and repr(OTHER) in error(resp)["message"]
    assert fake.all_methods() == []


def test_an_admin_lists_any_community(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    fake.dispatch.answers["ListTasks"] = dpb.ListTasksResponse()
    assert client.get(f"{BASE}/tasks?community_id={OTHER}", headers=admin(tokens)).status_code == 200
    assert cast(dpb.ListTasksRequest, fake.dispatch.last("ListTasks").request).community_id == OTHER


def test_the_communities_list_of_a_community_worker_holds_its_own(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    fake.org.answers["ListCommunities"] = opb.ListCommunitiesResponse(
        items=[opb.Community(id=OWN, name_zh="本社区"), opb.Community(id=OTHER, name_zh="邻社区")]
    )
    resp = client.get(f"{BASE}/org/communities", headers=worker(tokens))
    assert [c["id"] for c in resp.get_json()["items"]] == [OWN]


# ---------------------------------------------------------------- records


def test_an_issue_of_another_community_is_404_as_a_missing_one(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    fake.intake.answers["GetIssue"] = lambda req: issue(req.id, OTHER)
    h = worker(tokens)
    for path in ("i-9", "i-9/contact", "i-9/attachments/a-1"):
        resp = client.get(f"{BASE}/issues/{path}", headers=h)
        assert resp.status_code == 404 and error(resp)["code"] == "not_found", path
        assert (
            error(resp)["message"]
            == not_found_message("issue", "i-9")
            == "issue 'i-9' not found in this tenant (未找到该事项)"
        )
    resp = client.post(
        f"{BASE}/issues/i-9/reclassify", json={"urgency": "major", "reason": "x"}, headers={**h, "If-Match": '"999"'}
    )
    assert resp.status_code == 404  # before the stale version could tell that it exists
    assert fake.all_methods() == ["GetIssue"] * 4  # only the look-ups: nothing was read out or changed


def test_an_issue_of_its_own_community_is_read_as_usual(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    fake.intake.answers["GetIssue"] = lambda req: issue(req.id, OWN)
    fake.dispatch.answers["GetTaskForIssue"] = FakeRpcError(grpc.StatusCode.NOT_FOUND, "no task yet")
    resp = client.get(f"{BASE}/issues/i-1", headers=worker(tokens))
    assert resp.status_code == 200 and resp.get_json()["issue"]["id"] == "i-1"


def test_a_task_or_call_of_another_community_is_404_and_never_changed(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    fake.dispatch.answers["GetTask"] = lambda req: task(req.id, OTHER)
    fake.dispatch.answers["GetWhistle"] = lambda req: dpb.Whistle(id=req.id, community_id=OTHER)
    h = {**worker(tokens), "If-Match": '"3"'}
    helper = {"kind": "person", "id": "p-1"}
    for method, path, body in (
        ("GET", "tasks/tk-9", None),
        ("POST", "tasks/tk-9/claims", {"claimant": helper}),
        ("GET", "tasks/tk-9/candidates", None),
        ("POST", "tasks/tk-9/assignment", {"assignee": helper, "reason": "x"}),
        ("POST", "tasks/tk-9/assignment/response", {"answer": "accept"}),
        ("POST", "tasks/tk-9/transitions", {"action": "cancel", "reason": "x"}),
    ):
        resp = client.open(f"{BASE}/{path}", method=method, json=body, headers=h)
        assert resp.status_code == 404, path
        assert error(resp)["message"] == "task 'tk-9' not found in this tenant (未找到该任务)", path
    for method, path, body in (
        ("GET", "whistles/w-9", None),
        ("POST", "whistles/w-9/report-ins", {"answer": "accept", "responder": helper}),
    ):
        resp = client.open(f"{BASE}/{path}", method=method, json=body, headers=h)
        assert resp.status_code == 404 and error(resp)["message"] == not_found_message("call", "w-9"), path
    assert set(fake.all_methods()) == {"GetTask", "GetWhistle"}


def test_a_task_of_its_own_community_is_changed_as_usual_and_an_admin_is_not_looked_up(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    fake.dispatch.answers["GetTask"] = lambda req: task(req.id, OWN)
    fake.dispatch.answers["TransitionTask"] = lambda req: task(req.task_id, OWN)
    body = {"action": "cancel", "reason": "重复"}
    resp = client.post(f"{BASE}/tasks/tk-1/transitions", json=body, headers={**worker(tokens), "If-Match": '"3"'})
    assert resp.status_code == 200 and fake.dispatch.methods() == ["GetTask", "TransitionTask"]
    fake.dispatch.calls.clear()
    resp = client.post(f"{BASE}/tasks/tk-1/transitions", json=body, headers={**admin(tokens), "If-Match": '"3"'})
    assert resp.status_code == 200 and fake.dispatch.methods() == ["TransitionTask"]


def test_a_call_for_issues_of_another_community_is_404(client: FlaskClient, tokens: Path, fake: FakeClients) -> None:
    # The intake service answers a community worker's named issues of its own community only.
    fake.intake.answers["ListIssues"] = lambda req: ipb.ListIssuesResponse(
        issues=[issue(i, OWN) for i in req.ids if i.startswith("own-")]
    )
    fake.dispatch.answers["BlowWhistle"] = dpb.Whistle(id="w-new", version=1)
    h = worker(tokens)
    resp = client.post(f"{BASE}/whistles", json={"issue_ids": ["own-1", "other-1"]}, headers=h)
    assert resp.status_code == 404 and error(resp)["message"] == not_found_message("issue", "other-1")
    assert fake.dispatch.methods() == []
    assert cast(ipb.ListIssuesRequest, fake.intake.last("ListIssues").request).ids == ["own-1", "other-1"]
    assert client.post(f"{BASE}/whistles", json={"issue_ids": ["own-1"]}, headers=h).status_code == 201


def test_org_records_of_another_community_and_the_tenants_own(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    fake.org.answers["GetPerson"] = lambda req: opb.Person(id=req.id, community_id=OTHER, name_zh="某")
    fake.org.answers["GetResponsibilityItem"] = lambda req: opb.ResponsibilityItem(id=req.id, title_zh="按时参会")
    h = {**worker(tokens), "If-Match": '"1"'}
    for method in ("GET", "PUT"):
        resp = client.open(f"{BASE}/org/people/p-9", method=method, json={"name_zh": "某"}, headers=h)
        assert resp.status_code == 404 and error(resp)["message"] == "person 'p-9' not found in this tenant (未找到)"
    # A new record placed in another community, a new community, a change to the tenant's own list: 403.
    for path, body in (
        ("org/people", {"community_id": OTHER, "name_zh": "某"}),
        ("org/communities", {"name_zh": "新社区"}),
        ("org/responsibility-items", {"domain": "community", "title_zh": "x"}),
    ):
        resp = client.post(f"{BASE}/{path}", json=body, headers=h)
        assert resp.status_code == 403 and error(resp)["code"] == "community_out_of_scope", path
    for method in ("PUT", "DELETE"):
        resp = client.open(f"{BASE}/org/responsibility-items/r-1", method=method, json={"title_zh": "x"}, headers=h)
        assert resp.status_code == 403 and error(resp)["code"] == "community_out_of_scope", method
    assert not [m for m in fake.org.methods() if not m.startswith("Get")]  # nothing was changed
    assert client.get(f"{BASE}/org/responsibility-items/r-1", headers=h).status_code == 200  # reading it is fine
    fake.org.answers["CreatePerson"] = lambda req: opb.Person(id="p-new", community_id=req.community_id, version=1)
    made = client.post(f"{BASE}/org/people", json={"community_id": OWN, "name_zh": "某"}, headers=h)
    assert made.status_code == 201 and fake.org.last("CreatePerson").request.community_id == OWN  # type: ignore[attr-defined]


def test_who_am_i_shows_a_community_workers_community(client: FlaskClient, tokens: Path) -> None:
    me = client.get("/api/v1/auth/me", headers=worker(tokens)).get_json()
    assert (me["role"], me["community_id"], me["kind"]) == ("community_worker", OWN, "api_token")
    assert "community_id" not in client.get("/api/v1/auth/me", headers=admin(tokens)).get_json()
