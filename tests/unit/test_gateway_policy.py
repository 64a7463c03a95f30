"""The policy table: every route is in it, it says what the design says, and the hook enforces it.

The app is built with a stand-in for the service clients (no network): these tests are about routing
and refusals, which happen before any service is called. tests/e2e/test_gateway_policy.py checks the
same table against the running system.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.clients import Clients
from gateway.identity import ANONYMOUS, Identity
from gateway.policy import ANYONE, FRONTDOOR, POLICY, Rule, decide, is_direct_loopback, table
from gateway.tokens import TokenFile
from services.common.principal import ROLES, Principal
from services.common.settings import Settings


class NoNetwork:
    """Stands in for gateway.clients.Clients: any service call fails the test."""

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        return {}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unit tests make no service calls (tried clients.{name})")


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return tmp_path / "api-tokens.toml"


@pytest.fixture
def app(tokens: Path) -> Flask:
    return create_app(Settings(api_tokens_file=str(tokens)), clients=cast(Clients, NoNetwork()))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def bearer(tokens: Path, role: str, tenants: list[str]) -> dict[str, str]:
    token, _ = TokenFile(tokens).create(f"unit-{role}", role, tenants)
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- the table itself


def test_every_route_is_in_the_policy_table_and_every_entry_is_a_route(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    missing = sorted(endpoints - POLICY.keys())
    assert not missing, f"routes without a line in gateway/policy.py POLICY (default deny): {missing}"
    # The gRPC front door's methods are checked against its service in tests/unit/test_frontdoor_policy.py.
    stale = sorted(k for k in POLICY.keys() - endpoints if not k.startswith(FRONTDOOR))
    assert not stale, f"POLICY lines for routes that do not exist: {stale}"


def test_a_route_is_tenant_scoped_exactly_when_its_path_names_a_tenant(app: Flask) -> None:
    for url_rule in app.url_map.iter_rules():
        assert POLICY[url_rule.endpoint].tenant_scoped == ("<tenant>" in url_rule.rule), url_rule.rule


def test_roles_in_the_table_are_known_roles() -> None:
    for endpoint, rule in POLICY.items():
        assert rule.roles <= set(ROLES), endpoint
        assert rule.local_only <= rule.roles, endpoint


def test_district_roles_have_no_default_access_to_tenant_data() -> None:
    for endpoint, rule in POLICY.items():
        if rule.tenant_scoped:
            assert not {"district_department", "district_approver", "ops"} & rule.roles, endpoint


def test_personal_data_routes_are_for_community_staff_only() -> None:
    for endpoint, rule in POLICY.items():
        if endpoint.startswith("org.") or endpoint == "issues.list_issues":
            assert rule.roles == {"community_worker", "subdistrict_admin"}, endpoint


def test_the_printed_table_has_a_row_per_family() -> None:
    printed = table()
    assert "| org: write |" in printed and "| health |" in printed
    assert "district_department" in printed.splitlines()[0]


# ---------------------------------------------------------------- decisions

STAFF_RULE = Rule("org: read", frozenset({"community_worker", "subdistrict_admin"}), tenant_scoped=True)


def token(role: str, *tenants: str) -> Identity:
    return Identity(Principal(sub=f"t-{role}", role=role, tenants=tenants), token_id="tok_1")


def test_anonymous_on_a_route_that_needs_a_token_is_401() -> None:
    principal, refusal = decide(STAFF_RULE, "org.list_items", ANONYMOUS, "taiqian", local=True)
    assert principal is None and refusal is not None
    assert refusal.status == 401 and refusal.headers["WWW-Authenticate"] == 'Bearer realm="hongling"'


def test_a_role_that_is_not_admitted_is_403_naming_role_and_need() -> None:
    _, refusal = decide(STAFF_RULE, "org.list_items", token("district_department", "*"), "taiqian", local=True)
    assert refusal is not None and refusal.status == 403 and refusal.code == "forbidden"
    assert "'district_department'" in refusal.message and "community_worker, subdistrict_admin" in refusal.message


def test_a_tenant_outside_the_scope_is_403() -> None:
    _, refusal = decide(STAFF_RULE, "org.list_items", token("community_worker", "daimiao"), "taiqian", local=True)
    assert refusal is not None and refusal.status == 403 and refusal.code == "tenant_out_of_scope"
    assert "daimiao" in refusal.message and "taiqian" in refusal.message


def test_all_tenants_scope_and_own_tenant_pass() -> None:
    for identity in (token("subdistrict_admin", "*"), token("community_worker", "taiqian", "daimiao")):
        principal, refusal = decide(STAFF_RULE, "org.list_items", identity, "taiqian", local=False)
        assert refusal is None and principal == identity.principal


def test_an_unknown_tenant_is_404_after_the_role_check() -> None:
    _, refusal = decide(STAFF_RULE, "x", token("subdistrict_admin", "*"), "gotham", local=True)
    assert refusal is not None and refusal.status == 404 and refusal.code == "unknown_tenant"
    _, refusal = decide(STAFF_RULE, "x", ANONYMOUS, "gotham", local=True)
    assert refusal is not None and refusal.status == 401


def test_anonymous_acts_on_the_path_tenant_where_the_public_may() -> None:
    rule = POLICY["issues.create_issue"]
    principal, refusal = decide(rule, "issues.create_issue", ANONYMOUS, "taiqian", local=False)
    assert refusal is None and principal == Principal(sub="anonymous", role="public", tenants=("taiqian",))


def test_a_route_missing_from_the_table_is_refused() -> None:
    _, refusal = decide(None, "new.route", token("subdistrict_admin", "*"), None, local=True)
    assert refusal is not None and refusal.status == 403


def test_metrics_anonymous_only_from_loopback_ops_anywhere() -> None:
    rule = POLICY["metrics"]
    assert decide(rule, "metrics", ANONYMOUS, None, local=True)[1] is None
    remote = decide(rule, "metrics", ANONYMOUS, None, local=False)[1]
    assert remote is not None and remote.status == 401
    assert decide(rule, "metrics", token("ops"), None, local=False)[1] is None
    refused = decide(rule, "metrics", token("resident", "taiqian"), None, local=True)[1]
    assert refused is not None and refused.status == 403


@pytest.mark.parametrize(
    ("addr", "forwarded", "local"),
    [
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("127.0.0.1", True, False),
        ("10.0.0.5", False, False),
        (None, False, False),
        ("unix", False, False),
    ],
)
def test_direct_loopback(addr: str | None, forwarded: bool, local: bool) -> None:
    assert is_direct_loopback(addr, forwarded) is local


def test_health_and_tenants_are_open_to_everyone() -> None:
    for endpoint in ("healthz", "readyz", "tenants"):
        assert POLICY[endpoint].roles == ANYONE and not POLICY[endpoint].tenant_scoped


# ---------------------------------------------------------------- the hook, through Flask


def test_the_hook_refuses_before_any_service_is_called(client: FlaskClient, tokens: Path) -> None:
    resp = client.get("/api/v1/tenants/taiqian/org/people")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="hongling"'
    assert resp.json is not None and resp.json["error"]["code"] == "unauthenticated"
    assert resp.json["error"]["request_id"] == resp.headers["X-Request-Id"]
    resp = client.get("/api/v1/tenants/taiqian/issues", headers=bearer(tokens, "resident", ["taiqian"]))
    assert resp.status_code == 403 and "resident" in resp.json["error"]["message"]  # type: ignore[index]
    resp = client.post(
        "/api/v1/tenants/daimiao/org/communities", json={}, headers=bearer(tokens, "community_worker", ["taiqian"])
    )
    assert resp.status_code == 403 and resp.json["error"]["code"] == "tenant_out_of_scope"  # type: ignore[index]


def test_a_bad_credential_is_refused_even_on_open_routes(client: FlaskClient) -> None:
    resp = client.get("/healthz", headers={"Authorization": "Bearer hl_" + "q" * 43})
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/tenants").status_code == 200


def test_unknown_routes_are_404_and_methods_405_whoever_asks(client: FlaskClient) -> None:
    assert client.get("/api/v1/nothing").status_code == 404
    wrong_method = client.delete("/api/v1/tenants/taiqian/issues")
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert client.get("/static/x.css").status_code == 404


def test_a_route_added_without_a_policy_line_is_refused(app: Flask, tokens: Path) -> None:
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "secret")
    resp = app.test_client().get("/api/v1/forgotten", headers=bearer(tokens, "subdistrict_admin", ["*"]))
    assert resp.status_code == 403 and b"secret" not in resp.data
    assert resp.json is not None and "default deny" in resp.json["error"]["message"]
