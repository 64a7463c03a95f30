"""The governance API's store-free parts: body shapes, who sees which record, JSON, ids, the stored form
of requests and grants, the policy lines; and the routes' refusals that come before any storage.

The app is built with the no-network stand-in of tests/unit/test_gateway_policy.py; nothing here
reaches FerretDB (tests/e2e/test_governance.py does)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.clients import Clients
from gateway.governance import domain, shapes
from gateway.governance.shapes import ApproveIn, BodyError, FileRequestIn, ReasonIn
from gateway.governance.store import (
    grant_document,
    grant_from_document,
    grant_id_for,
    grant_terms,
    is_grant_id,
    is_request_id,
    new_request_id,
    request_document,
    request_from_document,
    request_id_for,
)
from gateway.policy import POLICY
from gateway.tokens import TokenFile
from services.common.audit import Entry
from services.common.principal import Principal
from services.common.settings import Settings
from tests.unit.test_gateway_policy import NoNetwork

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)


def body(**kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "data_access",
        "title": "台账核对",
        "purpose": "核对辖区养老服务设施台账",
        "tenant": "taiqian",
        "community_id": "jiade",
        "public_affairs_item_id": "pa-elderly",
        "funding": {"amount_yuan": 5000, "source": "区民政局专项经费", "working_conditions": "派员协助录入"},
        "starts_on": "2026-12-01",
        "ends_on": "2026-12-31",
        "operations": ["org.read:member-units"],
        "fields": ["name_zh", "kind"],
    }
    data.update(kw)
    return data


def principal(role: str, *tenants: str, sub: str = "", community: str | None = None) -> Principal:
    if role == "community_worker" and community is None:
        community = "c-1"  # REQUEST's community
    return Principal(sub=sub or f"t-{role}", role=role, tenants=tenants, community=community)


# ---------------------------------------------------------------- bodies


def test_a_well_formed_body_passes_to_the_domain_rules() -> None:
    parsed = shapes.parse(FileRequestIn, body())
    req = domain.validate_request(parsed.model_dump(), "民政局", TODAY)
    assert (
        req.tenant == "taiqian" and req.operations == ("org.read:member-units",) and req.fields == ("kind", "name_zh")
    )


def test_null_is_absent() -> None:
    parsed = shapes.parse(FileRequestIn, body(kind="assistance_task", operations=None, fields=None, tasks=["宣传"]))
    req = domain.validate_request(parsed.model_dump(), "应急局", TODAY)
    assert req.operations == (domain.ASSISTANCE_OPERATION,) and req.quota == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"favour": 1}, "favour"),
        ({"quota": "many"}, "quota"),
        ({"quota": True}, "quota"),
        ({"quota": 1.5}, "quota"),
        ({"purpose": 42}, "purpose"),
        ({"operations": "org.read:people"}, "operations"),
        ({"fields": ["name_zh", "Bad Field"]}, "fields[1]"),
        ({"funding": "plenty"}, "funding"),
        ({"funding": {"amount_yuan": "5000", "source": "x", "working_conditions": "y"}}, "funding.amount_yuan"),
        ({"funding": {"amount_yuan": 1, "source": "x", "working_conditions": "y", "extra": 1}}, "funding.extra"),
        ({"tasks": ["x" * 501]}, "tasks[0]"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_a_body_that_does_not_fit_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BodyError) as exc:
        shapes.parse(FileRequestIn, body(**change))
    assert exc.value.field == field
    assert exc.value.message.startswith(field) and any("\u4e00" <= ch <= "\u9fff" for ch in exc.value.message)


def test_funding_parts_are_named_in_full() -> None:
    assert shapes.domain_field("source") == "funding.source"
    assert shapes.domain_field("working_conditions") == "funding.working_conditions"
    assert shapes.domain_field("ends_on") == "ends_on" and shapes.domain_field(None) is None


def test_narrowing_from_the_approval_body() -> None:
    n = shapes.narrowing(shapes.parse(ApproveIn, {"fields": ["name_zh"], "ends_on": "2026-12-15", "quota": 3}))
    assert list(n.fields or []) == ["name_zh"] and n.ends_on == date(2026, 12, 15) and n.quota == 3
    assert n.operations is None
    empty = shapes.narrowing(shapes.parse(ApproveIn, {}))
    assert (empty.operations, empty.fields, empty.ends_on, empty.quota) == (None, None, None, None)
    for bad, field in (({"ends_on": "mid-December"}, "ends_on"), ({"quota": domain.MAX_QUOTA + 1}, "quota")):
        with pytest.raises(BodyError) as exc:
            shapes.narrowing(shapes.parse(ApproveIn, bad))
        assert exc.value.field == field


def test_a_reason_is_required_and_trimmed() -> None:
    assert shapes.required_reason(shapes.parse(ReasonIn, {"reason": "  已完成  "}), "x") == "已完成"
    for bad in ({}, {"reason": None}, {"reason": " \n "}):
        with pytest.raises(BodyError) as exc:
            shapes.required_reason(shapes.parse(ReasonIn, bad), "request is rejected")
        assert exc.value.field == "reason"
    with pytest.raises(BodyError) as exc:
        shapes.parse(ReasonIn, {"reason": "理" * (shapes.REASON_MAX + 1)})
    assert exc.value.field == "reason"


# ---------------------------------------------------------------- who sees what


REQUEST = {"tenant": "taiqian", "department": "民政局", "community_id": "c-1"}


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        (principal("district_approver", "*"), True),
        (principal("district_approver", "daimiao"), False),  # a token's tenant scope always holds
        (principal("district_department", "*", sub="民政局"), True),
        (principal("district_department", "*", sub="城管局"), False),
        (principal("district_department", "daimiao", sub="民政局"), False),
        (principal("subdistrict_admin", "taiqian"), True),
        (principal("subdistrict_admin", "daimiao"), False),
        (principal("community_worker", "taiqian"), False),
        (principal("resident", "taiqian"), False),
        (principal("ops", "*"), False),
    ],
)
def test_who_sees_a_request(who: Principal, sees: bool) -> None:
    assert shapes.may_see_request(who, REQUEST) is sees


def test_community_workers_of_the_tenant_see_its_grants() -> None:
    assert shapes.may_see_grant(principal("community_worker", "taiqian"), REQUEST)
    assert not shapes.may_see_grant(principal("community_worker", "daimiao"), REQUEST)
    # 社区范围: a community worker sees the grants on its own community, not on a neighbour's.
    assert not shapes.may_see_grant(principal("community_worker", "taiqian", community="c-2"), REQUEST)
    assert not shapes.may_see_grant(principal("resident", "taiqian"), REQUEST)
    assert shapes.may_see_grant(principal("district_department", "*", sub="民政局"), REQUEST)
    assert not shapes.may_see_grant(principal("district_department", "*", sub="城管局"), REQUEST)


def test_the_list_filter_follows_the_same_rule() -> None:
    assert shapes.request_filter(principal("district_approver", "*")) == (None, None)
    assert shapes.request_filter(principal("subdistrict_admin", "taiqian", "daimiao")) == (("taiqian", "daimiao"), None)
    assert shapes.request_filter(principal("district_department", "*", sub="民政局")) == (None, "民政局")


def test_the_policy_admits_exactly_the_readers_the_records_are_shown_to() -> None:
    assert POLICY["governance.list_requests"].roles == shapes.REQUEST_READERS
    assert POLICY["governance.get_request"].roles == shapes.REQUEST_READERS
    assert POLICY["governance.get_grant"].roles == shapes.GRANT_READERS
    assert POLICY["governance.file_request"].roles == {"district_department"}
    for endpoint in ("governance.approve_request", "governance.reject_request", "governance.revoke_grant"):
        assert POLICY[endpoint].roles == {"district_approver"}, endpoint
    assert POLICY["governance.list_tenant_grants"].roles == {"community_worker", "subdistrict_admin"}
    assert POLICY["governance.list_tenant_grants"].tenant_scoped


# ---------------------------------------------------------------- ids and stored form


def test_ids_are_unguessable_sorted_by_time_and_pair_request_with_grant() -> None:
    early, late = new_request_id(NOW), new_request_id(NOW + timedelta(milliseconds=1))
    assert is_request_id(early) and not is_grant_id(early) and early < late and early != new_request_id(NOW)
    grant_id = grant_id_for(early)
    assert is_grant_id(grant_id) and request_id_for(grant_id) == early
    for bad in ("", "dr-1", "gr-" + "0" * 28 + "0", "DR-" + "0" * 28, "dr-" + "g" * 28, "../dr-" + "0" * 25):
        assert not is_request_id(bad) and not is_grant_id(bad), bad


def test_a_request_and_its_grant_survive_the_stored_form() -> None:
    req = domain.validate_request(body(fields=["name_zh", "kind", "contact_name"]), "民政局", TODAY)
    rid = new_request_id(NOW)
    doc = request_document(req, rid, title="台账核对", public_affairs_mode="assist", filed_by="民政局", filed_at=NOW)
    assert doc["_id"] == rid and doc["status"] == "filed" and doc["grant"] is None
    assert request_from_document(doc) == req
    grant = domain.approve(req, grant_id_for(rid), rid, domain.Narrowing(fields=["name_zh"], quota=7))
    terms = grant_terms(grant)
    assert terms["starts_at"].tzinfo == UTC and terms["expires_at"] == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    stored = grant_document(grant.id, terms, {"by": "区审批", "at": NOW})
    assert not stored["revoked"] and "used" not in stored  # uses are counted in grant_uses
    assert grant_from_document(stored) == grant


# ---------------------------------------------------------------- JSON


def grant_doc(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": "gr-" + "1" * 28,
        "request_id": "dr-" + "1" * 28,
        "department": "民政局",
        "kind": "data_access",
        "tenant": "taiqian",
        "community_id": "jiade",
        "operations": ["org.read:member-units"],
        "fields": ["name_zh"],
        "starts_at": datetime(2026, 11, 30, 16, tzinfo=UTC),
        "expires_at": datetime(2026, 12, 31, 16, tzinfo=UTC),
        "quota": 5,
        "used": 2,
        "revoked": False,
        "revocation": None,
        "approved_by": "区审批",
        "approved_at": datetime(2026, 11, 28, 1, 30, tzinfo=UTC),
        "audit_count": 1,
    }
    doc.update(kw)
    return doc


@pytest.mark.parametrize(
    ("change", "now", "status"),
    [
        ({}, NOW, "active"),
        ({}, datetime(2026, 11, 30, 15, 59, tzinfo=UTC), "not_started"),
        ({}, datetime(2026, 12, 31, 16, tzinfo=UTC), "expired"),
        ({"used": 5}, NOW, "used_up"),
        ({"used": 500, "quota": 0}, NOW, "active"),
        ({"revoked": True, "used": 5}, datetime(2027, 1, 2, tzinfo=UTC), "revoked"),
    ],
)
def test_grant_status(change: dict[str, Any], now: datetime, status: str) -> None:
    assert shapes.grant_status(grant_doc(**change), now) == status


def test_grant_json_shows_use_and_local_times() -> None:
    shown = shapes.grant_json(grant_doc(), now=NOW)
    assert shown["used"] == 2 and shown["quota"] == 5 and shown["remaining"] == 3 and shown["status_zh"] == "有效"
    assert shown["starts_at"] == "2026-12-01T00:00:00+08:00" and shown["expires_at"] == "2027-01-01T00:00:00+08:00"
    assert shown["approved_at"] == "2026-11-28T09:30:00+08:00" and "audit" not in shown
    assert shapes.grant_json(grant_doc(quota=0), now=NOW)["remaining"] is None
    revoked = grant_doc(revoked=True, revocation={"by": "区审批", "at": NOW, "reason": "完成"})
    assert shapes.grant_json(revoked, now=NOW)["revocation"] == {
        "by": "区审批",
        "at": "2026-12-05T10:00:00+08:00",
        "reason": "完成",
    }
    entry = Entry(
        seq=9, time="2026-12-05T02:00:00.000001Z", actor="区审批", role="district_approver", action="a", outcome="done"
    )
    trail = shapes.grant_json(grant_doc(), now=NOW, audit=[entry], audit_more=None)
    assert trail["audit"][0]["time"] == "2026-12-05T10:00:00+08:00" and trail["audit_before"] is None


def test_request_json_and_its_audit_detail() -> None:
    req = domain.validate_request(
        body(kind="assistance_task", operations=None, fields=None, tasks=["张三家燃气入户宣传"]), "应急局", TODAY
    )
    doc = request_document(
        req, new_request_id(NOW), title="宣传", public_affairs_mode="undertake", filed_by="应急局", filed_at=NOW
    )
    shown = shapes.request_json(doc, now=NOW)
    assert shown["filed_at"] == "2026-12-05T10:00:00+08:00" and shown["tenant_name_zh"] == "泰前街道"
    assert (
        shown["kind_zh"] == "协助任务" and shown["public_affairs_mode_zh"] == "承办" and shown["status_zh"] == "待审核"
    )
    assert shown["decision"] is None and shown["grant"] is None
    detail = shapes.request_detail(doc)
    assert detail["tasks"] == 1 and "张三" not in str(detail) and "养老" not in str(detail)  # no free text


# ---------------------------------------------------------------- the routes, before any storage


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return tmp_path / "api-tokens.toml"


@pytest.fixture
def client(tokens: Path) -> FlaskClient:
    app: Flask = create_app(Settings(api_tokens_file=str(tokens)), clients=cast(Clients, NoNetwork()))
    return app.test_client()


def bearer(tokens: Path, role: str, tenants: list[str], sub: str = "") -> dict[str, str]:
    community = None
    if role == "community_worker":  # works for one community of one tenant
        tenants, community = ["taiqian"], "c-1"
    token, _ = TokenFile(tokens).create(sub or f"unit-{role}", role, tenants, community=community)
    return {"Authorization": f"Bearer {token}"}


def test_filing_is_for_departments_only(client: FlaskClient, tokens: Path) -> None:
    assert client.post("/api/v1/department-requests", json=body()).status_code == 401
    for role in ("subdistrict_admin", "district_approver", "community_worker", "ops"):
        resp = client.post("/api/v1/department-requests", json=body(), headers=bearer(tokens, role, ["*"]))
        assert resp.status_code == 403 and resp.json is not None and role in resp.json["error"]["message"]


def test_bad_bodies_are_400_before_anything_is_stored(client: FlaskClient, tokens: Path) -> None:
    dept = bearer(tokens, "district_department", ["*"], sub="mzj")
    approver = bearer(tokens, "district_approver", ["*"])
    rid = new_request_id(NOW)
    for method, path, payload, field in (
        ("post", "/api/v1/department-requests", body(quota="many"), "quota"),
        ("post", "/api/v1/department-requests", body(funding={"amount_yuan": 0}), "funding.amount_yuan"),
        ("post", "/api/v1/department-requests", body(ends_on="someday"), "ends_on"),
        ("post", f"/api/v1/department-requests/{rid}/approve", {"ends_on": "later"}, "ends_on"),
        ("post", f"/api/v1/department-requests/{rid}/reject", {"reason": ""}, "reason"),
        ("post", f"/api/v1/grants/{grant_id_for(rid)}/revoke", {}, "reason"),
    ):
        headers = dept if path.endswith("requests") else approver
        resp = getattr(client, method)(path, json=payload, headers=headers)
        assert resp.status_code == 400, (path, resp.data)
        assert resp.json is not None and resp.json["error"]["field"] == field, path


def test_ids_that_are_not_ours_are_404_without_a_look_up(client: FlaskClient, tokens: Path) -> None:
    approver = bearer(tokens, "district_approver", ["*"])
    for path in ("/api/v1/department-requests/x", "/api/v1/grants/dr-" + "0" * 28):
        resp = client.get(path, headers=approver)
        assert resp.status_code == 404 and resp.json is not None and resp.json["error"]["code"] == "not_found"
    resp = client.get("/api/v1/department-requests?status=maybe", headers=approver)
    assert resp.status_code == 400 and resp.json is not None and resp.json["error"]["field"] == "status"
