"""Who may call what, against the running system: role x tenant x route family -> the status the
policy says, and refused credentials (forged, expired, revoked, malformed) -> 401.

EXPECTED below is written out by hand from the design (not read from gateway/policy.py), so a change
to the table that nobody meant fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.tokens import TOKEN_ROLES, TokenFile, new_token
from tests.conftest import System, unique
from tests.e2e.test_org_api import SQUARE
from tests.e2e.test_skeleton_flow import ISSUE

OWN, OTHER = "qiujiadian", "caiyuan"
STAFF = {"community_worker", "subdistrict_admin"}
REPORTERS = {"anonymous", "public", "resident", "community_worker", "subdistrict_admin"}
EVERYONE = {"anonymous", *TOKEN_ROLES}
# family -> (who may call it, whether it is tenant-scoped)
EXPECTED: dict[str, tuple[set[str], bool]] = {
    "health": (EVERYONE, False),
    "metrics (from this host)": ({"anonymous", "public", "ops"}, False),
    "tenants list": (EVERYONE, False),
    "issues: report": (REPORTERS, True),
    "issues: read one": (REPORTERS, True),
    "issues: list": (STAFF, True),
    "org: read": (STAFF, True),
    "org: write": (STAFF, True),
    "org: resolve": (STAFF, True),
    "org: candidates": (STAFF, True),
    "org: import": (STAFF, True),
    "org: export": (STAFF, True),
}
# Families whose service answer is not a 2xx yet (spreadsheets are being built): passing the gateway
# means any status but 401/403.
THROUGH_ONLY = {"org: import", "org: export"}


@dataclass(frozen=True)
class Seed:
    issue_id: str
    community_id: str
    compound_id: str


Call = Callable[[str, Seed], tuple[str, str, dict[str, Any]]]
CALLS: dict[str, list[Call]] = {
    "health": [lambda t, s: ("GET", "/healthz", {}), lambda t, s: ("GET", "/readyz", {})],
    "metrics (from this host)": [lambda t, s: ("GET", "/metrics", {})],
    "tenants list": [lambda t, s: ("GET", "/api/v1/tenants", {})],
    "issues: report": [lambda t, s: ("POST", f"/api/v1/tenants/{t}/issues", {"json": ISSUE})],
    "issues: read one": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/issues/{s.issue_id}", {})],
    "issues: list": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/issues?page_size=1", {})],
    "org: read": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/communities?page_size=1", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/communities/{s.community_id}", {}),
    ],
    "org: write": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/org/communities", {"json": {"name_zh": f"社区{unique()}"}}),
    ],
    "org: resolve": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/org/resolve-location", {"json": {"compound_id": s.compound_id}})
    ],
    "org: candidates": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/org/candidates", {"json": {"skills": ["水电维修"]}})
    ],
    "org: import": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/org/people/import?format=csv&dry_run=true", {"data": b"a,b\n"})
    ],
    "org: export": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/people/export?format=csv", {})],
}
# (name, role, the tenant its token is scoped to): anonymous, every token role on OWN, an admin on '*'.
PRINCIPALS = [
    ("anonymous", "anonymous", ""),
    *((f"{r}@own", r, OWN) for r in TOKEN_ROLES),
    ("admin@*", "subdistrict_admin", "*"),
]


def admin(system: System) -> dict[str, str]:
    return system.auth("subdistrict_admin", "*")


def seed_tenant(system: System, tenant: str) -> Seed:
    base = f"{system.gateway}/api/v1/tenants/{tenant}"
    issue = requests.post(f"{base}/issues", json=ISSUE, timeout=10)
    assert issue.status_code == 201, issue.text
    made: dict[str, str] = {}
    for collection, body in (
        ("communities", {"name_zh": f"矩阵社区{unique()}"}),
        ("grids", {"name_zh": "矩阵网格", "boundary_geojson": json.dumps(SQUARE)}),
        ("compounds", {"name_zh": "矩阵小区", "address": "1号", "point": {"lat": 36.205, "lon": 117.105}}),
    ):
        if collection == "grids":
            body["community_id"] = made["communities"]
        if collection == "compounds":
            body["grid_id"] = made["grids"]
        resp = requests.post(f"{base}/org/{collection}", json=body, headers=admin(system), timeout=10)
        assert resp.status_code == 201, resp.text
        made[collection] = resp.json()["id"]
    return Seed(issue.json()["issue"]["id"], made["communities"], made["compounds"])


@pytest.fixture(scope="module")
def seeds(system: System) -> dict[str, Seed]:
    return {t: seed_tenant(system, t) for t in (OWN, OTHER)}


def expected(family: str, role: str, scope: str, tenant: str) -> str:
    """'ok' (2xx, or past the gateway for THROUGH_ONLY), '401' or '403'."""
    allowed, scoped = EXPECTED[family]
    if role not in allowed:
        return "401" if role == "anonymous" else "403"
    if scoped and role != "anonymous" and scope not in ("*", tenant):
        return "403"
    return "ok"


def outcome(family: str, resp: requests.Response) -> str:
    if resp.status_code in (401, 403):
        return str(resp.status_code)
    if family in THROUGH_ONLY or 200 <= resp.status_code < 300:
        return "ok"
    return f"unexpected {resp.status_code}: {resp.text[:200]}"


@pytest.mark.parametrize(("name", "role", "scope"), PRINCIPALS, ids=[p[0] for p in PRINCIPALS])
def test_role_x_tenant_x_route_family(system: System, seeds: dict[str, Seed], name: str, role: str, scope: str) -> None:
    headers = {} if role == "anonymous" else system.auth(role, scope)
    mismatches = []
    for family, calls in CALLS.items():
        for tenant, label in ((OWN, "own"), (OTHER, "other")):
            for call in calls:
                method, path, kw = call(tenant, seeds[tenant])
                resp = requests.request(method, system.gateway + path, headers=headers, timeout=10, **kw)
                want, got = expected(family, role, scope, tenant), outcome(family, resp)
                if want != got:
                    mismatches.append(f"{family:24} {label:5} {method} {path}: want {want}, got {got}")
                if resp.status_code in (401, 403):
                    err = resp.json()["error"]
                    assert err["request_id"] == resp.headers["X-Request-Id"] and err["message"]
                    if resp.status_code == 401:
                        assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
                    elif err["code"] == "forbidden":
                        assert repr(role) in err["message"]  # names the role and what is needed
    assert not mismatches, f"{name}:\n" + "\n".join(mismatches)


# ---------------------------------------------------------------- refused credentials


def org_read(system: System, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{system.gateway}/api/v1/tenants/{OWN}/org/communities", headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("header", "code", "error"),
    [
        (f"Bearer {new_token()}", "unauthenticated", "invalid_token"),  # well-formed, never issued
        ("Bearer hl_guess", "unauthenticated", "invalid_token"),
        ("Bearer", "unauthenticated", "invalid_request"),
        ("Basic YWRtaW46YWRtaW4=", "unauthenticated", "invalid_request"),
    ],
    ids=["forged", "short", "empty", "basic"],
)
def test_forged_and_malformed_credentials_are_401(system: System, header: str, code: str, error: str) -> None:
    for resp in (
        org_read(system, {"Authorization": header}),
        requests.get(f"{system.gateway}/healthz", headers={"Authorization": header}, timeout=5),
    ):
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == code
        assert f'error="{error}"' in resp.headers["WWW-Authenticate"]


def test_an_expired_token_is_401_saying_it_expired(system: System) -> None:
    resp = org_read(system, {"Authorization": f"Bearer {system.expired_token}"})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "token_expired"
    assert "令牌已过期" in resp.json()["error"]["message"]


def test_a_token_in_the_query_string_is_not_a_credential(system: System) -> None:
    token = system.token("subdistrict_admin", "*")
    resp = requests.get(f"{system.gateway}/api/v1/tenants/{OWN}/org/communities?access_token={token}", timeout=10)
    assert resp.status_code == 401


def test_tokens_created_and_revoked_while_running_take_effect_without_a_restart(system: System) -> None:
    tokens = TokenFile(system.tokens_file)
    sub = unique("live")
    token, _ = tokens.create(sub, "community_worker", [OWN], days=1)
    headers = {"Authorization": f"Bearer {token}"}
    assert org_read(system, headers).status_code == 200
    assert tokens.revoke(sub=sub) == 1
    resp = org_read(system, headers)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "token_revoked"
    assert org_read(system, admin(system)).status_code == 200  # the others still work


def test_tokens_never_reach_the_logs(system: System) -> None:
    org_read(system, system.auth("community_worker", OWN))
    logs = Path(system.settings_state_dir) / "logs"
    text = "".join(p.read_text("utf-8", errors="replace") for p in logs.glob("*.log"))
    leaked = [sub for (role, tenant), token in system.tokens.items() if token in text for sub in [f"{role}@{tenant}"]]
    assert not leaked and system.expired_token not in text
    assert f"test-community_worker-{OWN}" in (logs / "gateway.log").read_text("utf-8")
