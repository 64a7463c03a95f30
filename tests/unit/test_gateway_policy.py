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
from gateway.community import RESOLVERS
from gateway.identity import ANONYMOUS, Identity
from gateway.policy import (
    ANYONE,
    ANYWHERE,
    COMMUNITY_SCOPES,
    FRONTDOOR,
    NEW_RECORD,
    OWN_LIST,
    OWN_RECORD,
    POLICY,
    TENANT_WIDE,
    Rule,
    decide,
    is_direct_loopback,
    table,
)
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
    community = "c-1" if role == "community_worker" else None
    token, _ = TokenFile(tokens).create(f"unit-{role}", role, tenants, community=community)
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
    assert printed.splitlines()[0].endswith("| community worker: 社区范围 |")
    tasks = next(line for line in printed.splitlines() if line.startswith("| dispatch: tasks |"))
    assert tasks.endswith("| own community only (another: 403); own community's (another's: 404) |")
    report = next(line for line in printed.splitlines() if line.startswith("| issues: report |"))
    assert "anywhere in the tenant (首问负责)" in report


# ---------------------------------------------------------------- community scope (社区范围)

# How a community worker is held to its community on each route that admits it: written out by hand from
# the design, not read from gateway/policy.py. (scope, what the request names, looked up before the view)
COMMUNITY_EXPECTED: dict[str, tuple[str, str]] = {
    "healthz": (TENANT_WIDE, ""),
    "readyz": (TENANT_WIDE, ""),
    "tenants": (TENANT_WIDE, ""),
    "issues.create_issue": (ANYWHERE, ""),  # filed where it lies (首问负责)
    "issues.get_issue": (OWN_RECORD, "issue"),
    "issues.list_issues": (OWN_LIST, ""),
    "issues.count_issues": (OWN_LIST, ""),
    "dashboard.get_dashboard": (OWN_LIST, ""),
    "issues.get_attachment": (OWN_RECORD, "issue"),
    "issues.reclassify_issue": (OWN_RECORD, "issue"),
    "issues.decide_filing": (OWN_RECORD, "issue"),  # 核实立案: its own community's reports
    "issues.reveal_contact": (OWN_RECORD, "issue"),
    "issues.get_rules": (TENANT_WIDE, ""),
    "org.list_items": (OWN_LIST, ""),
    "org.get_item": (OWN_RECORD, "org"),
    "org.create_item": (NEW_RECORD, "org"),
    "org.update_item": (OWN_RECORD, "org"),
    "org.delete_item": (OWN_RECORD, "org"),
    "org.resolve_location": (TENANT_WIDE, ""),
    "org.find_candidates": (TENANT_WIDE, ""),
    "org.import_sheet": (NEW_RECORD, ""),  # each row's community: the org service's check
    "org.export_sheet": (OWN_LIST, ""),
    "org.start_import_job": (NEW_RECORD, ""),  # as the import: each row's community, the org service's check
    "org.get_import_job": (OWN_RECORD, ""),  # the org service: a job another started is 404
    "org.list_import_jobs": (OWN_LIST, ""),  # the org service: the jobs it started
    "dispatch.list_whistles": (OWN_LIST, ""),
    "dispatch.get_whistle": (OWN_RECORD, "call"),
    "dispatch.blow_whistle": (OWN_RECORD, "issues"),
    "dispatch.report_in": (OWN_RECORD, "call"),
    "dispatch.list_tasks": (OWN_LIST, ""),
    "dispatch.get_task": (OWN_RECORD, "task"),
    "dispatch.list_overdue": (OWN_LIST, ""),
    "dispatch.claim_task": (OWN_RECORD, "task"),
    "dispatch.rank_candidates": (OWN_RECORD, "task"),
    "dispatch.assign_task": (OWN_RECORD, "task"),
    "dispatch.respond_to_assignment": (OWN_RECORD, "task"),
    "dispatch.transition_task": (OWN_RECORD, "task"),
    # Alliance posts and activities: the alliance service answers another community's record as missing.
    "alliance_posts.list_posts": (OWN_LIST, ""),
    "alliance_posts.get_post": (OWN_RECORD, ""),
    "alliance_posts.create_post": (NEW_RECORD, ""),
    "alliance_posts.add_shifts": (OWN_RECORD, ""),
    "alliance_posts.claim_shift": (OWN_RECORD, ""),
    "alliance_posts.release_claim": (OWN_RECORD, ""),
    "alliance_posts.check_in": (OWN_RECORD, ""),
    "alliance_posts.shift_roster": (OWN_RECORD, ""),
    "alliance_posts.list_claims": (OWN_LIST, ""),
    "alliance_posts.fill_rate": (OWN_LIST, ""),
    "alliance_activities.list_activities": (OWN_LIST, ""),
    "alliance_activities.get_activity": (OWN_RECORD, ""),
    "alliance_activities.publish_activity": (NEW_RECORD, ""),
    "alliance_activities.sign_up": (OWN_RECORD, ""),
    "alliance_activities.withdraw": (OWN_RECORD, ""),
    "alliance_activities.record_attendance": (OWN_RECORD, ""),
    "alliance_activities.list_signups": (OWN_LIST, ""),
    "dispatch.get_rules": (TENANT_WIDE, ""),
    "governance.get_grant": (OWN_RECORD, "grant"),
    "governance.list_tenant_grants": (OWN_LIST, ""),
    "docs.openapi_json": (TENANT_WIDE, ""),
    "docs.asyncapi_json": (TENANT_WIDE, ""),
    "docs.docs_page": (TENANT_WIDE, ""),
    "docs.docs_asset": (TENANT_WIDE, ""),
    "portal.root": (TENANT_WIDE, ""),
    "portal.page": (TENANT_WIDE, ""),
    "auth.login": (TENANT_WIDE, ""),
    "auth.me": (TENANT_WIDE, ""),
    "auth.logout": (TENANT_WIDE, ""),
    "open311.list_services": (TENANT_WIDE, ""),
    "open311.get_service_definition": (TENANT_WIDE, ""),
    "open311.list_requests": (TENANT_WIDE, ""),
    "open311.get_request": (TENANT_WIDE, ""),
    "open311.get_token": (TENANT_WIDE, ""),
    "open311.unknown_resource": (TENANT_WIDE, ""),
    "open311.create_request": (ANYWHERE, ""),
    # Alliance: joint meetings (the alliance service tells a meeting's community: record "").
    "alliance_meetings.list_meetings": (OWN_LIST, ""),
    "alliance_meetings.hot_topics": (OWN_LIST, ""),
    "alliance_meetings.list_attendance": (OWN_LIST, ""),
    "alliance_meetings.schedule_meeting": (NEW_RECORD, ""),
    "alliance_meetings.get_meeting": (OWN_RECORD, ""),
    **{
        f"alliance_meetings.{name}": (OWN_RECORD, "")
        for name in (
            "cancel_meeting",
            "add_agenda_item",
            "accept_proposal",
            "record_attendance",
            "take_decision",
            "open_action_item",
            "close_meeting",
            "minutes",
        )
    },
    # The alliance ledger: the service checks the pledge's, entry's or person's community (it reads them anyway).
    "alliance_ledger.list_pledges": (OWN_LIST, ""),
    "alliance_ledger.list_resource_entries": (OWN_LIST, ""),
    "alliance_ledger.get_pledge": (OWN_RECORD, ""),
    "alliance_ledger.withdraw_pledge": (OWN_RECORD, ""),
    "alliance_ledger.create_pledge": (NEW_RECORD, ""),
    "alliance_ledger.confirm_delivery": (OWN_RECORD, ""),
    "alliance_ledger.get_hours": (OWN_RECORD, ""),
    "alliance_ledger.list_person_hours": (OWN_RECORD, ""),
    "alliance_ledger.list_hours_entries": (OWN_LIST, ""),
    "alliance_ledger.export_hours": (OWN_LIST, ""),
    "alliance_ledger.correct_hours": (OWN_RECORD, ""),
    "alliance_ledger.get_timebank_rules": (TENANT_WIDE, ""),
    "alliance_ledger.list_fund_balances": (OWN_LIST, ""),
    "alliance_ledger.list_fund_entries": (OWN_LIST, ""),
    "alliance_ledger.list_fund_months": (OWN_LIST, ""),
    "alliance_ledger.allocate_funds": (NEW_RECORD, ""),
    "alliance_ledger.spend_funds": (NEW_RECORD, ""),
    # ---- evaluation: measures and boards name a community (a list's filter); the weights are the tenant's
    "measures.get_measures": (OWN_LIST, ""),
    "measures.list_measures": (OWN_LIST, ""),
    "measures.dashboard_rates": (OWN_LIST, ""),
    "measures.get_boards": (OWN_LIST, ""),
    "measures.get_weights": (TENANT_WIDE, ""),
    # ---- end evaluation measures
}
# ---- evaluation: verification (验单; gateway/routes_verification.py): the evaluation service checks the records.
COMMUNITY_EXPECTED.update(
    {
        **{f"verification.{n}": (OWN_LIST, "") for n in ("list_queue", "list_rounds", "list_checks")},
        "verification.create_round": (NEW_RECORD, ""),
        **{
            f"verification.{n}": (OWN_RECORD, "")
            for n in ("get_round", "cast_vote", "close_round", "record_check", "get_check", "get_check_photo")
        },
        "verification.get_rules": (TENANT_WIDE, ""),
    }
)
# ---- end verification

# ---- Evaluation: ratings (评单; gateway/routes_ratings.py): the service checks the unit's community.
COMMUNITY_EXPECTED.update(
    {
        "ratings.list_issue_ratings": (OWN_LIST, ""),
        "ratings.rate_unit": (NEW_RECORD, ""),
        "ratings.list_unit_ratings": (OWN_LIST, ""),
        "ratings.get_rating_settings": (TENANT_WIDE, ""),
        "open311.follow_request": (TENANT_WIDE, ""),
    }
)
# publications are public by construction; staff read the tenant's (drafts too)
COMMUNITY_EXPECTED.update(
    {
        f"publications.{n}": (TENANT_WIDE, "")
        for n in (
            "list_publications",
            "get_publication",
            "render_publication",
            "public_list",
            "public_get",
            "public_render",
            "public_feed",
            "public_community_feed",
            "public_ledger",
        )
    }
)


def test_every_line_admitting_community_workers_says_how_they_are_held_to_their_community() -> None:
    admitted = {e for e, rule in POLICY.items() if "community_worker" in rule.roles}
    assert admitted == COMMUNITY_EXPECTED.keys()
    for endpoint, rule in POLICY.items():
        assert (rule.community, rule.record) == COMMUNITY_EXPECTED.get(endpoint, ("", "")), endpoint
        assert rule.community == "" or rule.community in COMMUNITY_SCOPES, endpoint
        if rule.record:  # a request naming a record is looked up by a resolver that exists
            assert rule.community in (OWN_RECORD, NEW_RECORD) and rule.record in RESOLVERS, endpoint


def worker_on(endpoint: str, community_id: str | None) -> tuple[Principal | None, Any]:
    return decide(
        POLICY[endpoint],
        endpoint,
        token("community_worker", "taiqian"),
        "taiqian",
        local=False,
        community_id=community_id,
    )


def test_a_community_workers_list_is_its_own_community_and_naming_another_is_403() -> None:
    for endpoint in (
        "issues.list_issues",
        "issues.count_issues",
        "dispatch.list_tasks",
        "org.export_sheet",
        "dashboard.get_dashboard",
    ):
        for asked in (None, "", "c-1"):
            principal, refusal = worker_on(endpoint, asked)
            assert refusal is None and principal is not None and principal.community == "c-1", (endpoint, asked)
        _, refusal = worker_on(endpoint, "c-2")
        assert refusal is not None and (refusal.status, refusal.code, refusal.field) == (
            403,
            "community_out_of_scope",
            "community_id",
        )
        assert "'c-1'" in refusal.message and "'c-2'" in refusal.message and "无权访问该社区数据" in refusal.message


def test_the_community_query_holds_community_workers_only_and_on_list_lines_only() -> None:
    rule = POLICY["dispatch.list_tasks"]
    admin = decide(
        rule, "dispatch.list_tasks", token("subdistrict_admin", "taiqian"), "taiqian", local=False, community_id="c-2"
    )
    assert admin[1] is None
    for endpoint in ("issues.get_rules", "dispatch.get_rules", "org.resolve_location"):  # the tenant's data
        assert worker_on(endpoint, "c-2")[1] is None, endpoint


def test_a_community_worker_without_its_community_is_refused_everywhere() -> None:
    unscoped = Identity(Principal(sub="old", role="community_worker", tenants=("taiqian",)), token_id="tok_old")
    for endpoint in ("issues.list_issues", "healthz", "auth.me"):
        tenant = "taiqian" if POLICY[endpoint].tenant_scoped else None
        _, refusal = decide(POLICY[endpoint], endpoint, unscoped, tenant, local=False)
        assert refusal is not None and (refusal.status, refusal.code) == (403, "community_required"), endpoint
        assert "set-community" in refusal.message


# ---------------------------------------------------------------- decisions

STAFF_RULE = Rule("org: read", frozenset({"community_worker", "subdistrict_admin"}), tenant_scoped=True)


def token(role: str, *tenants: str, community: str | None = None) -> Identity:
    if role == "community_worker" and community is None:
        community = "c-1"  # a community worker's credential always carries its community
    return Identity(Principal(sub=f"t-{role}", role=role, tenants=tenants, community=community), token_id="tok_1")


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
    for identity in (token("subdistrict_admin", "*"), token("community_worker", "taiqian")):
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
