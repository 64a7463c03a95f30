"""District department requests (审核把关) through the running gateway: filing, the org checks, decisions,
grants, who sees what, the audit log, and the atomic transitions on the real FerretDB."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from pymongo import MongoClient

from gateway.governance.store import DATABASE, GovernanceStore, grant_for_call, record_grant_audit, use_grant
from gateway.tokens import TokenFile
from services.common.audit import AuditLog, open_log
from tests.conftest import System, audit_caught_up, unique
from tests.e2e.test_org_api import created, new_community, org

T, OTHER = "shanggao", "daimiao"
SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUESTS = "/api/v1/department-requests"


@dataclass(frozen=True)
class Place:
    community_id: str
    item_id: str  # a public-affairs item (承办) of that community
    other_community_id: str
    other_item_id: str  # an item of the other community


@pytest.fixture(scope="module")
def place(system: System) -> Place:
    made = []
    for _ in range(2):
        community = new_community(system, T)
        item = created(
            org(
                system,
                "POST",
                "public-affairs-items",
                tenant=T,
                json={"community_id": community["id"], "mode": "undertake", "title_zh": f"养老服务{unique()}"},
            )
        )
        made.append((community["id"], item["id"]))
    return Place(made[0][0], made[0][1], made[1][0], made[1][1])


@pytest.fixture(scope="module")
def audit(system: System) -> Iterator[AuditLog]:
    log = open_log(system.settings)
    yield log
    log.entries.database.client.close()


@pytest.fixture(scope="module")
def store(mongo_client: MongoClient[Any]) -> GovernanceStore:
    return GovernanceStore(mongo_client[DATABASE])


def department(system: System, tenants: tuple[str, ...] = ("*",)) -> tuple[str, dict[str, str]]:
    """A fresh district department account (its own sub, so its requests and audit entries are its own)."""
    sub = unique("dept")
    token, _ = TokenFile(system.tokens_file).create(sub, "district_department", list(tenants), days=1)
    return sub, {"Authorization": f"Bearer {token}"}


def today() -> date:
    return datetime.now(SHANGHAI).date()


def body(place: Place, **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "data_access",
        "title": "养老服务设施台账核对",
        "purpose": "核对辖区养老服务设施台账",
        "tenant": T,
        "community_id": place.community_id,
        "public_affairs_item_id": place.item_id,
        "funding": {"amount_yuan": 5000, "source": "区民政局专项经费", "working_conditions": "派员协助录入"},
        "starts_on": today().isoformat(),
        "ends_on": (today() + timedelta(days=30)).isoformat(),
        "operations": ["org.read:member-units", "org.read:communities"],
        "fields": ["name_zh", "kind", "contact_name"],
    }
    data.update(kw)
    return data


def call(system: System, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
    return requests.request(method, system.gateway + path, headers=headers or {}, timeout=15, **kw)


def approver(system: System) -> dict[str, str]:
    return system.auth("district_approver", "*")


def file(system: System, headers: dict[str, str], data: dict[str, Any]) -> dict[str, Any]:
    resp = call(system, "POST", REQUESTS, headers, json=data)
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


def error(resp: requests.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["request_id"] == resp.headers["X-Request-Id"] and err["message"]
    return err


def entries_about(audit: AuditLog, tenant: str, pred: Callable[[Any], bool]) -> list[Any]:
    return [e for e in audit.iter_entries(tenant=tenant) if pred(e)]


# ---------------------------------------------------------------- the whole way


def test_request_approved_narrowed_seen_by_the_tenant_and_revoked(
    system: System, place: Place, audit: AuditLog
) -> None:
    sub, dept = department(system)
    resp = call(system, "POST", REQUESTS, dept, json=body(place))
    assert resp.status_code == 201, resp.text
    req = resp.json()
    assert resp.headers["Location"] == f"{REQUESTS}/{req['id']}"
    assert req["status"] == "filed" and req["department"] == sub and req["grant"] is None
    assert req["public_affairs_mode"] == "undertake" and req["public_affairs_mode_zh"] == "承办"
    assert req["filed_at"].endswith("+08:00") and req["tenant_name_zh"] == "上高街道"
    assert "养老服务设施" in resp.content.decode("utf-8")  # UTF-8, not \u escapes

    # Who sees the filed request.
    assert call(system, "GET", f"{REQUESTS}/{req['id']}", dept).status_code == 200
    assert call(system, "GET", f"{REQUESTS}/{req['id']}", system.auth("subdistrict_admin", T)).status_code == 200
    for outsider in (department(system)[1], system.auth("subdistrict_admin", OTHER)):
        error(call(system, "GET", f"{REQUESTS}/{req['id']}", outsider), 404)
    listed = call(system, "GET", f"{REQUESTS}?status=filed&page_size=100", approver(system)).json()["requests"]
    assert req["id"] in [r["id"] for r in listed]
    other_admin = call(system, "GET", f"{REQUESTS}?page_size=100", system.auth("subdistrict_admin", OTHER)).json()
    assert req["id"] not in [r["id"] for r in other_admin["requests"]]

    # The approver narrows: fewer fields, one operation, an earlier end, a quota.
    ends = today() + timedelta(days=10)
    narrowing = {
        "fields": ["name_zh"],
        "operations": ["org.read:member-units"],
        "ends_on": ends.isoformat(),
        "quota": 5,
    }
    resp = call(system, "POST", f"{REQUESTS}/{req['id']}/approve", approver(system), json=narrowing)
    assert resp.status_code == 200, resp.text
    grant = resp.json()
    assert grant["request_id"] == req["id"] and grant["department"] == sub and grant["tenant"] == T
    assert grant["fields"] == ["name_zh"] and grant["operations"] == ["org.read:member-units"]
    assert grant["quota"] == 5 and grant["used"] == 0 and grant["remaining"] == 5 and grant["status"] == "active"
    assert grant["expires_at"] == f"{(ends + timedelta(days=1)).isoformat()}T00:00:00+08:00"
    assert grant["community_id"] == place.community_id

    # Wider than requested is refused; the request now shows its decision and its grant.
    shown = call(system, "GET", f"{REQUESTS}/{req['id']}", dept).json()
    assert shown["status"] == "approved" and shown["grant"]["id"] == grant["id"] and shown["grant_id"] == grant["id"]
    assert shown["decision"]["by"] == "test-district_approver-all" and shown["decision"]["at"].endswith("+08:00")

    # The tenant's community and subdistrict see the grant and its trail; another tenant does not.
    audit_caught_up()
    for staff in (system.auth("subdistrict_admin", T), system.worker_auth(T, place.community_id)):
        seen = call(system, "GET", f"/api/v1/grants/{grant['id']}", staff)
        assert seen.status_code == 200, seen.text
        assert [e["action"] for e in seen.json()["audit"]] == ["request.approve"]
        listed = call(system, "GET", f"/api/v1/tenants/{T}/grants?page_size=100", staff).json()["grants"]
        mine = next(g for g in listed if g["id"] == grant["id"])
        assert mine["used"] == 0 and mine["quota"] == 5 and mine["audit"][0]["actor"] == "test-district_approver-all"
    error(call(system, "GET", f"/api/v1/grants/{grant['id']}", system.auth("subdistrict_admin", OTHER)), 404)
    # A community worker sees the grants on its own community: another community's is not there for it.
    neighbour = system.worker_auth(T, place.other_community_id)
    assert error(call(system, "GET", f"/api/v1/grants/{grant['id']}", neighbour), 404)["code"] == "not_found"
    listed = call(system, "GET", f"/api/v1/tenants/{T}/grants?page_size=100", neighbour).json()["grants"]
    assert grant["id"] not in [g["id"] for g in listed]
    assert {g["community_id"] for g in listed} <= {place.other_community_id}
    err = error(call(system, "GET", f"/api/v1/tenants/{T}/grants", system.auth("subdistrict_admin", OTHER)), 403)
    assert err["code"] == "tenant_out_of_scope"
    other_list = call(system, "GET", f"/api/v1/tenants/{OTHER}/grants", system.auth("subdistrict_admin", OTHER))
    assert grant["id"] not in [g["id"] for g in other_list.json()["grants"]]
    assert call(system, "GET", f"/api/v1/grants/{grant['id']}", dept).status_code == 200  # its own grant

    # Revoke: a reason is required; a second revocation is a conflict.
    no_reason = call(system, "POST", f"/api/v1/grants/{grant['id']}/revoke", approver(system), json={})
    assert error(no_reason, 400)["field"] == "reason"
    resp = call(system, "POST", f"/api/v1/grants/{grant['id']}/revoke", approver(system), json={"reason": "任务已完成"})
    assert resp.status_code == 200, resp.text
    revoked = resp.json()
    assert revoked["status"] == "revoked" and revoked["revocation"]["reason"] == "任务已完成"
    again = call(system, "POST", f"/api/v1/grants/{grant['id']}/revoke", approver(system), json={"reason": "再次"})
    assert error(again, 409)["code"] == "already_revoked"
    audit_caught_up()
    trail = call(system, "GET", f"/api/v1/grants/{grant['id']}", system.auth("subdistrict_admin", T)).json()
    assert [e["action"] for e in trail["audit"]] == ["grant.revoke", "request.approve"]
    assert trail["audit"][0]["time"].endswith("+08:00") and trail["audit_before"] is None

    # Every decision is in the hash-chained audit log, without the free text.
    mine_in_log = entries_about(audit, T, lambda e: e.target in (req["id"], grant["id"]))
    assert [(e.action, e.outcome) for e in mine_in_log] == [
        ("request.file", "done"),
        ("request.approve", "allowed"),
        ("grant.revoke", "done"),
    ]
    assert mine_in_log[0].actor == sub and mine_in_log[0].role == "district_department"
    assert mine_in_log[1].grant_id == grant["id"] and mine_in_log[1].detail["narrowed"] is True
    assert all("养老" not in str(e.detail) for e in mine_in_log)
    assert audit.verify().ok


def test_approval_can_only_narrow(system: System, place: Place) -> None:
    req = file(system, department(system)[1], body(place))
    url = f"{REQUESTS}/{req['id']}/approve"
    for narrowing, field in (
        ({"fields": ["name_zh", "id_number"]}, "fields"),
        ({"ends_on": (today() + timedelta(days=60)).isoformat()}, "ends_on"),
        ({"ends_on": "soon"}, "ends_on"),
        ({"operations": []}, "operations"),
        ({"quota": -1}, "quota"),
        ({"scope": "all"}, "scope"),
    ):
        assert error(call(system, "POST", url, approver(system), json=narrowing), 400)["field"] == field, narrowing
    assert call(system, "GET", f"{REQUESTS}/{req['id']}", approver(system)).json()["status"] == "filed"
    resp = call(system, "POST", url, approver(system))  # no body: approved as requested
    assert resp.status_code == 200, resp.text
    assert resp.json()["fields"] == ["contact_name", "kind", "name_zh"] and resp.json()["quota"] == 0
    assert resp.json()["remaining"] is None  # 0 = unlimited


# ---------------------------------------------------------------- refusals at filing


def test_assessment_task_is_refused_with_403_and_logged(system: System, place: Place, audit: AuditLog) -> None:
    sub, dept = department(system)
    data = body(place, kind="assistance_task", operations=None, fields=None, tasks=["年度社区工作目标责任考核打分"])
    err = error(call(system, "POST", REQUESTS, dept, json=data), 403)
    assert err["code"] == "assessment_task_refused" and "考核任务" in err["message"]
    refusals = entries_about(audit, T, lambda e: e.actor == sub)
    assert [(e.action, e.outcome, e.role) for e in refusals] == [("request.refuse", "refused", "district_department")]
    assert refusals[0].detail["reason"] == "assessment_task_refused" and refusals[0].detail["marker"] == "目标责任考核"
    assert "目标责任考核是考核任务" in refusals[0].detail["why"] and "目标责任考核是考核任务" in err["message"]
    mine = call(system, "GET", REQUESTS, dept).json()["requests"]
    assert mine == []  # nothing was filed

    # A real assistance task with funding passes.
    ok = file(
        system, dept, body(place, kind="assistance_task", operations=None, fields=None, tasks=["燃气安全入户宣传"])
    )
    assert ok["operations"] == ["intake.create:assistance_task"] and ok["quota"] == 1
    assert [f["phrase"] for f in ok["flags"]] == ["台账"] and "减负" in ok["flags"][0]["why"]  # the purpose's 台账
    # Wording that often hides an assessment passes, flagged; the approver reads the flag on the request.
    flagged = file(
        system, dept, body(place, kind="assistance_task", operations=None, fields=None, tasks=["协助开展燃气安全检查"])
    )
    shown = call(system, "GET", f"{REQUESTS}/{flagged['id']}", approver(system)).json()
    assert [f["phrase"] for f in shown["flags"]] == ["检查", "台账"] and all(f["why"] for f in shown["flags"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"public_affairs_item_id": "no-such-item"}, "public_affairs_item_id"),
        ({"community_id": "no-such-community"}, "community_id"),
        ({"tenant": "gotham"}, "tenant"),
        ({"funding": {"amount_yuan": 0, "source": "x", "working_conditions": "y"}}, "funding.amount_yuan"),
        ({"funding": {"amount_yuan": 100, "source": "", "working_conditions": "y"}}, "funding.source"),
        ({"operations": ["org.write:people"]}, "operations"),
        ({"fields": ["name_zh", "Bad Field"]}, "fields[1]"),
        ({"quota": "many"}, "quota"),
        ({"ends_on": "2020-01-01", "starts_on": "2019-12-01"}, "ends_on"),
        ({"favour": True}, "favour"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    system: System, place: Place, change: dict[str, Any], field: str
) -> None:
    err = error(call(system, "POST", REQUESTS, department(system)[1], json=body(place, **change)), 400)
    assert err["field"] == field and err["code"] == "invalid_argument"


def test_the_item_must_be_on_the_named_communitys_list(system: System, place: Place) -> None:
    data = body(place, public_affairs_item_id=place.other_item_id)
    err = error(call(system, "POST", REQUESTS, department(system)[1], json=data), 400)
    assert err["field"] == "public_affairs_item_id" and "公共事务清单" in err["message"]
    file(
        system,
        department(system)[1],
        body(place, community_id=place.other_community_id, public_affairs_item_id=place.other_item_id),
    )


def test_a_department_files_only_within_its_token_scope(system: System, place: Place, audit: AuditLog) -> None:
    sub, dept = department(system, (OTHER,))
    err = error(call(system, "POST", REQUESTS, dept, json=body(place)), 403)
    assert err["code"] == "tenant_out_of_scope" and err["field"] == "tenant"
    assert [e.detail["reason"] for e in entries_about(audit, T, lambda e: e.actor == sub)] == ["tenant_out_of_scope"]


def test_a_call_naming_no_real_tenant_is_logged_at_district_level(system: System, audit: AuditLog) -> None:
    """A department may type any tenant into a path. Its refusal is the district's entry, naming what it typed,
    and the audit read model goes on projecting (once, an entry of tenant "t" stopped it for good)."""
    sub, dept = department(system)
    for tenant in ("t", "nowhere-" + "x" * 100):
        resp = call(system, "GET", f"/api/v1/tenants/{tenant}/org/member-units", dept)
        assert resp.status_code in (403, 404), resp.text
    mine = entries_about(audit, "", lambda e: e.actor == sub)
    assert [e.detail["tenant_named"] for e in mine] == ["t", ("nowhere-" + "x" * 100)[:64]]
    assert all(e.outcome == "refused" for e in mine)
    audit_caught_up()  # the projection passed them


# ---------------------------------------------------------------- decisions


def test_reject_needs_a_reason_and_decides_once(system: System, place: Place) -> None:
    req = file(system, department(system)[1], body(place))
    url = f"{REQUESTS}/{req['id']}/reject"
    for bad in ({}, {"reason": "  "}, {"reason": "理" * 501}, {"reason": 5}):
        assert error(call(system, "POST", url, approver(system), json=bad), 400)["field"] == "reason", bad
    error(call(system, "POST", url, approver(system)), 400)  # no body at all
    resp = call(system, "POST", url, approver(system), json={"reason": "应由部门自行调取，不属社区公共事务"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "rejected" and resp.json()["decision"]["reason"].startswith("应由部门")
    for again in ("approve", "reject"):
        resp = call(system, "POST", f"{REQUESTS}/{req['id']}/{again}", approver(system), json={"reason": "x"})
        assert error(resp, 409)["code"] == "already_decided"
    listed = call(system, "GET", f"{REQUESTS}?status=rejected&tenant={T}&page_size=100", approver(system))
    assert req["id"] in [r["id"] for r in listed.json()["requests"]]


def test_concurrent_decisions_exactly_one_wins(system: System, place: Place, audit: AuditLog) -> None:
    req = file(system, department(system)[1], body(place))
    n = 6
    barrier = threading.Barrier(n)
    results: list[int] = []

    def decide(i: int) -> None:
        action, payload = ("approve", {}) if i % 2 == 0 else ("reject", {"reason": "并发驳回"})
        barrier.wait()
        resp = call(system, "POST", f"{REQUESTS}/{req['id']}/{action}", approver(system), json=payload)
        results.append(resp.status_code)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * (n - 1), results
    decisions = entries_about(audit, T, lambda e: e.target == req["id"] and e.action != "request.file")
    assert len(decisions) == 1


def test_two_approvers_at_once_one_gets_409(system: System, place: Place) -> None:
    req = file(system, department(system)[1], body(place))
    barrier = threading.Barrier(2)
    results: list[requests.Response] = []

    def approve() -> None:
        barrier.wait()
        results.append(call(system, "POST", f"{REQUESTS}/{req['id']}/approve", approver(system)))

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200, 409]
    assert next(r for r in results if r.status_code == 409).json()["error"]["code"] == "already_decided"


# ---------------------------------------------------------------- roles


def test_roles_other_than_the_allowed_are_refused(system: System, place: Place) -> None:
    req = file(system, department(system)[1], body(place))
    approve_url = f"{REQUESTS}/{req['id']}/approve"
    refused = [
        ("POST", REQUESTS, None, 401),
        ("POST", REQUESTS, system.auth("subdistrict_admin", T), 403),
        ("POST", REQUESTS, approver(system), 403),
        ("GET", REQUESTS, None, 401),
        ("GET", REQUESTS, system.auth("community_worker", T), 403),
        ("GET", REQUESTS, system.auth("resident", T), 403),
        ("POST", approve_url, None, 401),
        ("POST", approve_url, system.auth("district_department", "*"), 403),
        ("POST", approve_url, system.auth("subdistrict_admin", "*"), 403),
        ("POST", f"{REQUESTS}/{req['id']}/reject", system.auth("ops", "*"), 403),
        ("GET", f"/api/v1/tenants/{T}/grants", system.auth("district_department", "*"), 403),
        ("GET", f"/api/v1/tenants/{T}/grants", approver(system), 403),
        ("GET", f"/api/v1/tenants/{T}/grants", None, 401),
        ("GET", "/api/v1/grants/gr-0", system.auth("resident", T), 403),
        ("POST", "/api/v1/grants/gr-0/revoke", system.auth("subdistrict_admin", T), 403),
    ]
    for method, path, headers, status in refused:
        resp = call(system, method, path, headers, json={"reason": "x"} if method == "POST" else None)
        assert resp.status_code == status, (method, path, resp.text)
    assert call(system, "GET", f"{REQUESTS}/{req['id']}", approver(system)).json()["status"] == "filed"
    error(call(system, "GET", f"{REQUESTS}/dr-nope", approver(system)), 404)
    error(call(system, "GET", "/api/v1/grants/gr-nope", approver(system)), 404)


def test_lists_page_and_filter(system: System, place: Place) -> None:
    _, dept = department(system)
    ids = [file(system, dept, body(place))["id"] for _ in range(3)]
    first = call(system, "GET", f"{REQUESTS}?page_size=2", dept).json()
    assert [r["id"] for r in first["requests"]] == ids[::-1][:2] and first["next_page_token"] == ids[1]
    rest = call(system, "GET", f"{REQUESTS}?page_size=2&page_token={first['next_page_token']}", dept).json()
    assert [r["id"] for r in rest["requests"]] == [ids[0]] and rest["next_page_token"] is None
    assert call(system, "GET", f"{REQUESTS}?status=approved", dept).json()["requests"] == []
    for query, field in (("status=done", "status"), ("page_size=0", "page_size"), ("page_token=x", "page_token")):
        assert error(call(system, "GET", f"{REQUESTS}?{query}", dept), 400)["field"] == field


# ---------------------------------------------------------------- for grant enforcement


def test_grant_use_is_atomic_and_its_trail_reaches_the_tenant(
    system: System, place: Place, store: GovernanceStore, audit: AuditLog
) -> None:
    sub, dept = department(system)
    req = file(system, dept, body(place))
    grant = call(system, "POST", f"{REQUESTS}/{req['id']}/approve", approver(system), json={"quota": 5}).json()
    found = grant_for_call(grant["id"], store)
    assert found is not None and found.department == sub and found.quota == 5 and found.used == 0
    assert grant_for_call("gr-" + "0" * 28, store) is None

    results: list[bool] = []
    barrier = threading.Barrier(12)

    def use() -> None:
        barrier.wait()
        results.append(use_grant(grant["id"], store))

    threads = [threading.Thread(target=use) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 5
    record_grant_audit(
        grant["id"],
        actor=sub,
        role="district_department",
        action="department.call",
        outcome="allowed",
        tenant=T,
        target="org.read:member-units",
        detail={"fields": ["name_zh"]},
        audit=audit,
        store=store,
    )
    audit_caught_up()
    worker = system.worker_auth(T, place.community_id)
    seen = call(system, "GET", f"/api/v1/grants/{grant['id']}?audit_limit=1", worker)
    assert seen.status_code == 200, seen.text
    shown = seen.json()
    assert shown["used"] == 5 and shown["remaining"] == 0 and shown["status"] == "used_up"
    assert shown["audit_count"] == 2  # counted on the write side: the approval and the call
    # Pages go by seq: `audit_before` is the seq of the page's last entry.
    assert [e["action"] for e in shown["audit"]] == ["department.call"]
    before = shown["audit_before"]
    assert before == shown["audit"][0]["seq"]
    older = call(system, "GET", f"/api/v1/grants/{grant['id']}?audit_before={before}", worker)
    assert [e["action"] for e in older.json()["audit"]] == ["request.approve"] and older.json()["audit_before"] is None
    assert older.json()["audit"][0]["seq"] < before

    call(system, "POST", f"/api/v1/grants/{grant['id']}/revoke", approver(system), json={"reason": "核对完毕"})
    assert not use_grant(grant["id"], store)
    revoked = grant_for_call(grant["id"], store)
    assert revoked is not None and revoked.revoked and revoked.used == 5


def test_lost_copies_are_repaired_from_the_claims(system: System, place: Place, store: GovernanceStore) -> None:
    req = file(system, department(system)[1], body(place))
    grant = call(system, "POST", f"{REQUESTS}/{req['id']}/approve", approver(system)).json()
    # As if the gateway died after claiming the decision, before the request and grant documents were written.
    store.grants.delete_one({"_id": grant["id"]})
    store.requests.update_one({"_id": req["id"]}, {"$set": {"status": "filed", "decision": None, "grant_id": None}})
    audit_caught_up()
    again = call(system, "GET", f"/api/v1/grants/{grant['id']}", approver(system))
    assert again.status_code == 200 and again.json()["expires_at"] == grant["expires_at"]
    assert [e["action"] for e in again.json()["audit"]] == ["request.approve"]
    shown = call(system, "GET", f"{REQUESTS}/{req['id']}", approver(system)).json()
    assert shown["status"] == "approved" and shown["grant"]["id"] == grant["id"]
    resp = call(system, "POST", f"{REQUESTS}/{req['id']}/reject", approver(system), json={"reason": "迟了"})
    assert error(resp, 409)["code"] == "already_decided"
