"""Who may call what, against the running system: role x tenant x community x route family -> the status
the policy says, and refused credentials (forged, expired, revoked, malformed) -> 401.

Every principal calls every family on three sets of records: community A of its tenant OWN (TEST_COMMUNITY,
the community of the community worker's token), community B of OWN (a community of its own, for the
records a community worker of A must not reach) and community A of OTHER. EXPECTED and COMMUNITY_B below
are written out by hand from the design (not read from gateway/policy.py), so a change to the table that
nobody meant fails here.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from gateway.tokens import TOKEN_ROLES, TokenFile, new_token
from services.org.seed import Rect
from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique, wait_for
from tests.e2e.test_skeleton_flow import ISSUE

OWN, OTHER = "qiujiadian", "caiyuan"
STAFF = {"community_worker", "subdistrict_admin"}
REPORTERS = {"anonymous", "public", "resident", "community_worker", "subdistrict_admin"}
REQUEST_READERS = {"district_approver", "district_department", "subdistrict_admin"}
EVERYONE = {"anonymous", *TOKEN_ROLES}
ACCOUNT_ADMINS = {"subdistrict_admin", "ops"}
DISPATCHERS = STAFF | {"member"}
PASSWORD = "Lz8#qv-Matrix-Tai"
# family -> (who may call it, whether it is tenant-scoped)
EXPECTED: dict[str, tuple[set[str], bool]] = {
    "health": (EVERYONE, False),
    "metrics (from this host)": ({"anonymous", "public", "ops"}, False),
    "tenants list": (EVERYONE, False),
    "issues: report": (REPORTERS, True),
    "issues: read one": (REPORTERS, True),
    "issues: list": (STAFF, True),
    "issues: counts": (STAFF, True),
    "issues: attachments": (REPORTERS, True),
    "issues: reclassify": (STAFF, True),
    "issues: reporter contact": (STAFF, True),
    "issues: file or decline": (STAFF, True),
    "issues: categories and rules": (REPORTERS, True),
    "issues: set rules": ({"subdistrict_admin"}, True),
    # Only a district department under an assistance grant (tests/e2e/test_department_access.py): nobody here.
    "issues: hand over an assistance task": (set(), True),
    "org: read": (STAFF, True),
    "org: write": (STAFF, True),
    "org: resolve": (STAFF, True),
    "org: candidates": (STAFF, True),
    "org: import": (STAFF, True),
    "org: import jobs": (STAFF, True),
    "org: export": (STAFF, True),
    # District department requests and grants: not tenant-scoped routes, but a token's tenant scope still
    # holds for the tenant a department files for (in the body) and a list is filtered to (?tenant=).
    "department requests: file": ({"district_department"}, True),
    "department requests: list": (REQUEST_READERS, True),
    "department requests: read one": (REQUEST_READERS, False),
    "department requests: decide": ({"district_approver"}, False),
    "grants: read one": (REQUEST_READERS | STAFF, False),
    "grants: tenant list": (STAFF, True),
    "grants: revoke": ({"district_approver"}, False),
    # The audit log: approvers and ops district-wide within their token's tenant scope (?tenant=), a
    # subdistrict admin its own tenant's entries; verification of the whole chain: approvers and ops.
    "audit: read": ({"district_approver", "ops"}, True),
    "audit: read a tenant": ({"subdistrict_admin"}, True),
    "audit: export": ({"district_approver", "ops"}, True),
    "audit: verify": ({"district_approver", "ops"}, False),
    # The portal's dashboard: figures only, for the tenant's staff.
    "dashboard": (STAFF, True),
    # People's log-in and accounts.
    "auth: log in": (EVERYONE, False),
    "auth: who am I": (EVERYONE, False),
    "auth: log out": (set(TOKEN_ROLES) - {"public"}, False),
    "users: list": (ACCOUNT_ADMINS, False),
    "users: list a tenant": (ACCOUNT_ADMINS, True),
    "users: create": (ACCOUNT_ADMINS, True),
    "users: change role": (ACCOUNT_ADMINS, True),
    # Open311 GeoReport v2: reading is public on every jurisdiction; reporting needs an api_key (in the form,
    # see API_KEY) of a reporter's role whose scope includes the jurisdiction (jurisdiction_id).
    "open311: read": (EVERYONE, False),
    "open311: report": (REPORTERS - {"anonymous"}, True),
    # Dispatch: staff run it; a member (bound to one helper) reads the board, answers calls, claims, answers
    # its assignment, starts and finishes what it leads and lists its own tasks; residents and the public
    # follow their issue instead. Ops read a tenant's overdue list and webhooks on district-wide routes.
    "dispatch: whistle board": (DISPATCHERS, True),
    "dispatch: blow a call": (STAFF, True),
    "dispatch: report in": (DISPATCHERS, True),
    "dispatch: tasks": (STAFF, True),
    "dispatch: overdue list": (STAFF, True),
    "dispatch: my tasks": ({"member"}, True),
    "dispatch: claim": (DISPATCHERS, True),
    "dispatch: candidates and assignment": (STAFF, True),
    "dispatch: answer an assignment": (DISPATCHERS, True),
    "dispatch: task transitions": (DISPATCHERS, True),
    "dispatch: rules": (STAFF, True),
    "dispatch: set rules": ({"subdistrict_admin"}, True),
    "dispatch: overdue list (ops)": ({"ops"}, True),
    "webhooks: manage": ({"subdistrict_admin"}, True),
    "webhooks: read (ops)": ({"ops"}, True),
    # Alliance ledger: members pledge for their unit and read their own hours; staff run the rest.
    "alliance ledger: pledges": (DISPATCHERS, True),
    "alliance ledger: pledge": (DISPATCHERS, True),
    "alliance ledger: resource list": (DISPATCHERS, True),
    "alliance ledger: confirm delivery": (STAFF, True),
    "alliance ledger: hours": (DISPATCHERS, True),
    "alliance ledger: hours lists": (STAFF, True),
    "alliance ledger: correct hours": (STAFF, True),
    "alliance ledger: time-bank rules": (STAFF, True),
    "alliance ledger: set time-bank rules": ({"subdistrict_admin"}, True),
    "alliance ledger: funds": (STAFF, True),
    "alliance ledger: allocate and spend": (STAFF, True),
    # Alliance: standing posts and co-building activities. Staff manage them; members read, claim, sign up and
    # check in as their bound helper and list their own records.
    "alliance posts: read": (DISPATCHERS, True),
    "alliance posts: manage": (STAFF, True),
    "alliance posts: claim": (DISPATCHERS, True),
    "alliance posts: roster": (STAFF, True),
    "alliance posts: claims": (DISPATCHERS, True),
    "alliance posts: fill rate": (STAFF, True),
    "alliance activities: read": (DISPATCHERS, True),
    "alliance activities: publish": (STAFF, True),
    "alliance activities: sign up": (DISPATCHERS, True),
    "alliance activities: attendance": (DISPATCHERS, True),
    "alliance activities: sign-ups": (DISPATCHERS, True),
    # The portal's pages and files: anyone (the data each page shows needs a person's token).
    "portal": (EVERYONE, False),
    # The API's own documents (OpenAPI, AsyncAPI) and the docs page: anyone.
    "api docs": (EVERYONE, False),
    # Alliance: joint meetings. Staff run them; a member reads the meetings it is invited to, checks in and
    # proposes items as its bound helper, and reads its own attendance.
    "alliance meetings: list": (STAFF, True),
    "alliance meetings: hot topics": (STAFF, True),
    "alliance meetings: attendance history": (DISPATCHERS, True),
    "alliance meetings: schedule": (STAFF, True),
    "alliance meetings: read one": (DISPATCHERS, True),
    "alliance meetings: manage": (STAFF, True),
    "alliance meetings: check in": ({"member"}, True),
    "alliance meetings: propose": ({"member"}, True),
    # ---- evaluation: measures and the quarterly boards (gateway/routes_measures.py)
    "evaluation measures: read": (STAFF, True),
    "evaluation boards: read": (STAFF, True),
    "evaluation weights: read": (STAFF, True),
    "evaluation weights: set": ({"subdistrict_admin"}, True),
    "evaluation measures: rebuild": ({"ops"}, True),
    # ---- end evaluation measures
}
# What a community worker of community A (its token's) gets on the records of community B of its own tenant,
# call by call (CALLS[family]); a family not named here answers as on community A. A list or count naming B is
# 403 community_out_of_scope, a record of B is 404 as a missing one (an id never confirms that it exists), a
# new record placed in B is 403; an issue is reported wherever it lies (首问负责); the tenant's own data
# (categories, rules, where a place is, the helpers that fit) is the same for all.
COMMUNITY_B: dict[str, tuple[str, ...]] = {
    "issues: report": ("ok",),
    "issues: read one": ("404",),
    "issues: list": ("403",),
    "issues: counts": ("403",),
    "dashboard": ("403",),
    "issues: attachments": ("404",),
    "issues: reclassify": ("404",),
    "issues: file or decline": ("404",),
    "issues: reporter contact": ("404",),
    "org: read": ("403", "404"),  # grids of B; B itself
    "org: write": ("403", "404", "404"),  # a team in B; B updated; B's list entry deleted
    "org: export": ("403",),
    "org: import jobs": ("ok", "404"),  # its own jobs; a job B's worker started is 404, as a missing one
    "grants: read one": ("404",),
    "grants: tenant list": ("ok",),  # its own community's grants (B's are not in it)
    "dispatch: whistle board": ("403", "404"),
    "dispatch: blow a call": ("404",),
    "dispatch: report in": ("404",),
    "dispatch: tasks": ("403", "404"),
    "dispatch: overdue list": ("403",),
    "dispatch: claim": ("404",),
    "dispatch: candidates and assignment": ("404", "404"),
    "dispatch: answer an assignment": ("404",),
    "dispatch: task transitions": ("404",),
    "alliance meetings: list": ("403",),
    "alliance meetings: hot topics": ("403",),
    "alliance meetings: attendance history": ("403",),
    "alliance meetings: schedule": ("403",),
    "alliance meetings: read one": ("404",),
    "alliance meetings: manage": ("404", "404"),
    "alliance ledger: pledges": ("403", "404", "404"),
    "alliance ledger: confirm delivery": ("404",),
    "alliance ledger: hours": ("404", "404"),
    "alliance ledger: hours lists": ("403", "403"),
    "alliance ledger: correct hours": ("404",),
    "alliance ledger: funds": ("403", "403", "403"),
    "alliance ledger: allocate and spend": ("403", "403"),
    "alliance posts: read": ("403", "404"),
    "alliance posts: manage": ("403", "404"),
    "alliance posts: claim": ("404", "404", "404"),
    "alliance posts: roster": ("404",),
    "alliance posts: claims": ("403",),
    "alliance posts: fill rate": ("403",),
    "alliance activities: read": ("403", "404"),
    "alliance activities: publish": ("403",),
    "alliance activities: sign up": ("404", "404"),
    "alliance activities: attendance": ("404",),
    "alliance activities: sign-ups": ("403",),
    # ---- evaluation: measures and boards name a community: B's is 403 (the weights are the tenant's)
    "evaluation measures: read": ("403", "403", "403"),
    "evaluation boards: read": ("403",),
    # ---- end evaluation measures
}
# Families whose credential is the form field api_key (GeoReport v2), not the Authorization header: the
# matrix sends the token there; a missing or bad one is 403 (the spec's), in the spec's error shape.
API_KEY = {"open311: report"}
WEBHOOK = {"url": "http://127.0.0.1:9/matrix", "event_types": ["Escalated"], "description": "矩阵测试"}
OPEN311_REPORT = {"service_code": "other", "lat": "36.1876", "long": "117.1296", "description": "矩阵测试：楼道灯不亮"}
# Roles a family's tenant does not restrict (ops manage every tenant's accounts, whatever their token's scope).
SCOPE_FREE: dict[str, set[str]] = {f: {"ops"} for f in ("users: list a tenant", "users: create", "users: change role")}
# Families whose request here is one the service refuses after the policy let it through: for these an
# allowed call may answer a 2xx or one of the statuses listed (each the route's answer to this very
# request); anything else, a 5xx above all, is a failure. Refused cells are 401/403 as for every family.
# Records a caller may not see are 404 and a decided request or revoked grant is 409: for these families
# too the policy's answer is "through" (the records themselves are tests/e2e/test_governance.py's).
THROUGH: dict[str, set[int]] = {
    # A stale If-Match (412); rules that do not validate (400) or a stale If-Match. (The seed issues carry a
    # photo and a contact: reading them is a 200.)
    "issues: reclassify": {412},
    # The seed issue was filed directly (the shipped filing rule): nothing waits for a decision (409).
    "issues: file or decline": {409},
    "issues: set rules": {400, 412},
    # A stale If-Match on an update or a list entry's deletion (412).
    "org: write": {412},
    # A dry run of a sheet with unknown columns: a report of its errors (200), or an unreadable sheet (400).
    "org: import": {400},
    "department requests: read one": {404},
    "department requests: decide": {404, 409},
    "grants: read one": {404},
    "grants: revoke": {404, 409},
    # Log-in with an empty body (400 before any password is checked or an attempt is counted) and log-out
    # with an API token (400: it ends a person's sessions only).
    "auth: log in": {400},
    "auth: log out": {400},
    # A call for a duplicate issue (404) or a closed one (409), report-ins and claims for helpers that do not
    # exist (400) or a call or task in the wrong state (409), an assignee who does not exist (400), a stale
    # If-Match (412), rules that do not validate (400), a webhook that is not there (404).
    "dispatch: blow a call": {404, 409},
    "dispatch: report in": {400, 409},
    "dispatch: claim": {400, 409},
    "dispatch: candidates and assignment": {400, 409, 412},
    "dispatch: answer an assignment": {409, 412},
    "dispatch: task transitions": {409, 412},
    "dispatch: set rules": {400, 412},
    "webhooks: manage": {404},
    # A meeting a member is not invited to is 404 as a missing one; the placeholder member is nobody of the
    # community (400); a meeting that has not started cannot be ended (409).
    "alliance meetings: read one": {404},
    "alliance meetings: check in": {404},
    "alliance meetings: propose": {400},
    "alliance meetings: manage": {409},
    # The ledger's records named here do not exist (404); a pledge of an item off the list (400); a spending
    # beyond the balance (409); rules that do not validate (400).
    "alliance ledger: pledges": {404},
    "alliance ledger: pledge": {400},
    "alliance ledger: confirm delivery": {404},
    "alliance ledger: hours": {404},
    "alliance ledger: correct hours": {404},
    "alliance ledger: set time-bank rules": {400},
    "alliance ledger: allocate and spend": {409},
    # Shifts without the shifts to add (400); claims and sign-ups by staff naming nobody (400), a member's of a
    # record it does not hold (404), twice, of a released claim, before the window opens (409).
    "alliance posts: manage": {400},
    "alliance posts: claim": {400, 404, 409},
    "alliance activities: sign up": {400, 404, 409},
    "alliance activities: attendance": {400, 409},
    # ---- evaluation: weights that do not validate (400; a stale If-Match 412); a quarter that is none (400)
    "evaluation weights: set": {400, 412},
    "evaluation measures: rebuild": {400},
    # ---- end evaluation measures
}
# 403s answered after the policy admitted the call: a member naming another helper (the view) or acting on a
# task it does not lead (the dispatch service); tests/e2e/test_dispatch_api.py has them. Here: "through".
VIEW_REFUSALS = {"not_your_task", "not_your_responder"}


@dataclass(frozen=True)
class Seed:
    issue_id: str  # reported at `point`, in the community, with a photo and the reporter's contact
    community_id: str
    compound_id: str
    item_id: str  # a public-affairs item of the community
    request_id: str  # a department request on the tenant, approved
    grant_id: str  # its grant
    username: str = ""  # a resident's account on the tenant
    task_id: str = ""  # the dispatch task of issue_id (or of its original, when it is a duplicate)
    whistle_id: str = ""  # that task's call
    webhook_id: str = ""  # a webhook registration of the tenant
    attachment_id: str = ""  # the issue's photo
    job_id: str = ""  # an import job (a dry run) started by a community worker of the community
    point: tuple[float, float] = TEST_POINT  # where the issue is, in the community's grid
    meeting_id: str = ""  # an online meeting of the community, tomorrow, inviting person_id
    person_id: str = ""  # a person of the community
    post_id: str = ""  # an alliance post of the community with one shift tomorrow
    shift_id: str = ""  # that shift
    claim_id: str = ""  # a claim of that shift (a person's, recorded by an admin)
    activity_id: str = ""  # an alliance activity of the community
    follow_code: str = ""  # 查询码: the follow-up code the report of issue_id answered once
    unit_id: str = ""  # a member unit of the community (the ratings' seed_ratings)


Call = Callable[[str, Seed], tuple[str, str, dict[str, Any]]]
CALLS: dict[str, list[Call]] = {
    "health": [lambda t, s: ("GET", "/healthz", {}), lambda t, s: ("GET", "/readyz", {})],
    "metrics (from this host)": [lambda t, s: ("GET", "/metrics", {})],
    "tenants list": [lambda t, s: ("GET", "/api/v1/tenants", {})],
    "portal": [lambda t, s: ("GET", "/portal/", {}), lambda t, s: ("GET", f"/portal/{t}/issues/{s.issue_id}", {})],
    "api docs": [
        lambda t, s: ("GET", "/api/v1/openapi.json", {}),
        lambda t, s: ("GET", "/api/v1/asyncapi.json", {}),
        lambda t, s: ("GET", "/api/docs", {}),
    ],
    "issues: report": [lambda t, s: ("POST", f"/api/v1/tenants/{t}/issues", {"json": issue_at(s.point)})],
    "issues: read one": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/issues/{s.issue_id}", {})],
    "issues: list": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/issues?page_size=1&community_id={s.community_id}", {})],
    "issues: counts": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/issue-counts?community_id={s.community_id}", {})],
    "issues: attachments": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/issues/{s.issue_id}/attachments/{s.attachment_id}", {})
    ],
    "issues: reclassify": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/issues/{s.issue_id}/reclassify",
            {"json": {"urgency": "major", "reason": "矩阵"}, "headers": {"If-Match": '"999"'}},
        )
    ],
    "issues: reporter contact": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/issues/{s.issue_id}/contact", {})],
    "issues: file or decline": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/issues/{s.issue_id}/filing", {"json": {"decision": "accept"}})
    ],
    "issues: categories and rules": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/classification-rules", {})],
    "issues: set rules": [
        lambda t, s: (
            "PUT",
            f"/api/v1/tenants/{t}/classification-rules",
            {"json": {"categories": []}, "headers": {"If-Match": '"999"'}},
        )
    ],
    "issues: hand over an assistance task": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/assistance-tasks", {"json": {"title": "矩阵", "description": "x"}})
    ],
    "org: read": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/grids?page_size=1&community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/communities/{s.community_id}", {}),
    ],
    "org: write": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/org/volunteer-teams",
            {"json": {"community_id": s.community_id, "name_zh": f"矩阵队{unique()}"}},
        ),
        lambda t, s: (
            "PUT",
            f"/api/v1/tenants/{t}/org/communities/{s.community_id}",
            {"json": {"name_zh": "矩阵改名"}, "headers": {"If-Match": '"999"'}},
        ),
        lambda t, s: (
            "DELETE",
            f"/api/v1/tenants/{t}/org/public-affairs-items/{s.item_id}",
            {"headers": {"If-Match": '"999"'}},
        ),
    ],
    "org: resolve": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/org/resolve-location", {"json": {"compound_id": s.compound_id}})
    ],
    "org: candidates": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/org/candidates", {"json": {"skills": ["水电维修"]}})
    ],
    "org: import": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/org/people/import?format=csv&dry_run=true", {"data": b"a,b\n"}),
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/org/people/import-jobs?format=csv&dry_run=true",
            {"data": b"a,b\n"},
        ),
    ],
    "org: import jobs": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/import-jobs?page_size=1", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/import-jobs/{s.job_id}", {}),
    ],
    "org: export": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/org/people/export?format=csv&community_id={s.community_id}", {})
    ],
    "department requests: file": [lambda t, s: ("POST", "/api/v1/department-requests", {"json": request_body(t, s)})],
    "department requests: list": [lambda t, s: ("GET", f"/api/v1/department-requests?tenant={t}&page_size=1", {})],
    "department requests: read one": [lambda t, s: ("GET", f"/api/v1/department-requests/{s.request_id}", {})],
    "department requests: decide": [
        lambda t, s: ("POST", f"/api/v1/department-requests/{s.request_id}/approve", {"json": {}}),
        lambda t, s: ("POST", f"/api/v1/department-requests/{s.request_id}/reject", {"json": {"reason": "矩阵"}}),
    ],
    "grants: read one": [lambda t, s: ("GET", f"/api/v1/grants/{s.grant_id}", {})],
    "grants: tenant list": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/grants?page_size=1", {})],
    "grants: revoke": [lambda t, s: ("POST", f"/api/v1/grants/{s.grant_id}/revoke", {"json": {"reason": "矩阵"}})],
    "audit: read": [lambda t, s: ("GET", f"/api/v1/audit?tenant={t}&limit=1", {})],
    "audit: read a tenant": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/audit?limit=1", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/audit/export?format=csv&from_seq=1&to_seq=5", {}),
    ],
    "audit: export": [lambda t, s: ("GET", f"/api/v1/audit/export?format=ndjson&tenant={t}&from_seq=1&to_seq=5", {})],
    "audit: verify": [lambda t, s: ("POST", "/api/v1/audit/verify", {})],
    "dashboard": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/dashboard?community_id={s.community_id}&days=7", {})],
    "auth: log in": [lambda t, s: ("POST", "/api/v1/auth/login", {"json": {}})],
    "auth: who am I": [lambda t, s: ("GET", "/api/v1/auth/me", {})],
    "auth: log out": [lambda t, s: ("POST", "/api/v1/auth/logout", {})],
    "users: list": [lambda t, s: ("GET", "/api/v1/users?page_size=5", {})],
    "users: list a tenant": [lambda t, s: ("GET", f"/api/v1/users?tenant={t}&page_size=5", {})],
    "users: create": [lambda t, s: ("POST", "/api/v1/users", {"json": new_account(t)})],
    "users: change role": [  # to the role it has: changes nothing, but passes every permission check first
        lambda t, s: ("PUT", f"/api/v1/users/{s.username}/role", {"json": {"role": "resident", "tenants": [t]}})
    ],
    "open311: read": [
        lambda t, s: ("GET", f"/open311/v2/services.json?jurisdiction_id={t}", {}),
        lambda t, s: ("GET", f"/open311/v2/services/other.xml?jurisdiction_id={t}", {}),
        lambda t, s: ("GET", f"/open311/v2/requests.xml?jurisdiction_id={t}&service_request_id={s.issue_id}", {}),
        lambda t, s: ("GET", f"/open311/v2/requests/{s.issue_id}.json?jurisdiction_id={t}", {}),
        lambda t, s: ("GET", f"/open311/v2/tokens/{s.issue_id}.json?jurisdiction_id={t}", {}),
    ],
    "open311: report": [
        lambda t, s: ("POST", "/open311/v2/requests.json", {"data": {**OPEN311_REPORT, "jurisdiction_id": t}})
    ],
    "dispatch: whistle board": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/whistles?page_size=1&community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/whistles/{s.whistle_id}", {}),
    ],
    "dispatch: blow a call": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/whistles",
            {"json": {"issue_ids": [s.issue_id], "note": "矩阵", "idempotency_key": "matrix"}},
        )
    ],
    "dispatch: report in": [  # staff must name the helper (400); a member's placeholder helper does not exist
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/whistles/{s.whistle_id}/report-ins",
            {"json": {"answer": "decline", "reason": "矩阵"}},
        )
    ],
    "dispatch: tasks": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/tasks?page_size=1&community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/tasks/{s.task_id}", {}),
    ],
    "dispatch: overdue list": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/tasks/overdue?page_size=1&community_id={s.community_id}", {})
    ],
    "dispatch: my tasks": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/tasks/mine", {})],
    "dispatch: claim": [lambda t, s: ("POST", f"/api/v1/tenants/{t}/tasks/{s.task_id}/claims", {"json": {}})],
    "dispatch: candidates and assignment": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/tasks/{s.task_id}/candidates?limit=1", {}),
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/tasks/{s.task_id}/assignment",
            {
                "json": {"assignee": {"kind": "person", "id": "matrix-nobody"}, "reason": "矩阵"},
                "headers": {"If-Match": '"999"'},
            },
        ),
    ],
    "dispatch: answer an assignment": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/tasks/{s.task_id}/assignment/response",
            {"json": {"answer": "decline", "reason": "矩阵"}, "headers": {"If-Match": '"999"'}},
        )
    ],
    "dispatch: task transitions": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/tasks/{s.task_id}/transitions",
            {"json": {"action": "start"}, "headers": {"If-Match": '"999"'}},
        )
    ],
    "dispatch: rules": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/dispatch-rules", {})],
    "dispatch: set rules": [
        lambda t, s: (
            "PUT",
            f"/api/v1/tenants/{t}/dispatch-rules",
            {"json": {"call_types": []}, "headers": {"If-Match": '"999"'}},
        )
    ],
    "dispatch: overdue list (ops)": [lambda t, s: ("GET", f"/api/v1/dispatch/overdue?tenant={t}&page_size=1", {})],
    "webhooks: manage": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/webhooks", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/webhooks/{s.webhook_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/webhooks/{s.webhook_id}/deliveries?page_size=1", {}),
        lambda t, s: ("PUT", f"/api/v1/tenants/{t}/webhooks/{s.webhook_id}/active", {"json": {"active": True}}),
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/webhooks", {"json": WEBHOOK}),
        lambda t, s: ("DELETE", f"/api/v1/tenants/{t}/webhooks/wh_matrix_none", {}),
    ],
    "alliance posts: read": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/posts?page_size=1&community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/posts/{s.post_id}", {}),
    ],
    "alliance posts: manage": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/posts", {"json": alliance_post(s.community_id)}),
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/posts/{s.post_id}/shifts", {"json": {}}),
    ],
    "alliance posts: claim": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/shifts/{s.shift_id}/claims", {"json": {}}),
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/post-claims/{s.claim_id}/release", {}),
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/post-claims/{s.claim_id}/check-in", {}),
    ],
    "alliance posts: roster": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/shifts/{s.shift_id}/roster", {})],
    "alliance posts: claims": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/post-claims?community_id={s.community_id}", {})
    ],
    "alliance posts: fill rate": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/post-stats?community_id={s.community_id}", {})
    ],
    "alliance activities: read": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/activities?community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/activities/{s.activity_id}", {}),
    ],
    "alliance activities: publish": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/activities", {"json": alliance_activity(s.community_id)})
    ],
    "alliance activities: sign up": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/activities/{s.activity_id}/signups", {"json": {}}),
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/activities/{s.activity_id}/withdrawals", {"json": {}}),
    ],
    "alliance activities: attendance": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/activities/{s.activity_id}/attendance", {"json": {}})
    ],
    "alliance activities: sign-ups": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/activity-signups?community_id={s.community_id}", {})
    ],
    "webhooks: read (ops)": [
        lambda t, s: ("GET", f"/api/v1/webhooks?tenant={t}", {}),
        lambda t, s: ("GET", f"/api/v1/webhooks/{s.webhook_id}/deliveries?tenant={t}", {}),
    ],
    "alliance meetings: list": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/meetings?page_size=1&community_id={s.community_id}", {})
    ],
    "alliance meetings: hot topics": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/meetings/hot-topics?community_id={s.community_id}", {})
    ],
    "alliance meetings: attendance history": [
        lambda t, s: (
            "GET",
            f"/api/v1/tenants/{t}/alliance/meetings/attendance?person_id={s.person_id}&community_id={s.community_id}",
            {},
        )
    ],
    "alliance meetings: schedule": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/meetings", {"json": meeting_body(s, "matrix")})
    ],
    "alliance meetings: read one": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/meetings/{s.meeting_id}", {})],
    "alliance meetings: manage": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/meetings/{s.meeting_id}/close", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/meetings/{s.meeting_id}/minutes.docx", {}),
    ],
    "alliance meetings: check in": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/meetings/{s.meeting_id}/check-in", {"json": {}})
    ],
    "alliance meetings: propose": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/alliance/meetings/{s.meeting_id}/proposals",
            {"json": {"title": "矩阵提议"}},
        )
    ],
    "alliance ledger: pledges": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/pledges?page_size=1&community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/pledges/pl-matrix-none", {}),
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/alliance/pledges/pl-matrix-none/withdrawal",
            {"json": {"reason": "矩阵"}},
        ),
    ],
    "alliance ledger: pledge": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/alliance/pledges",
            {
                "json": {
                    "unit_id": "mu-matrix-none",
                    "resource_entry_id": "ur-none",
                    "quantity": 1,
                    "for_kind": "task",
                    "for_id": "t-1",
                }
            },
        )
    ],
    # Staff: nobody's list (empty); a member naming another unit: refused by the view (not_your_responder).
    "alliance ledger: resource list": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/resource-entries?unit_id=mu-matrix-none", {})
    ],
    "alliance ledger: confirm delivery": [
        lambda t, s: ("POST", f"/api/v1/tenants/{t}/alliance/pledges/pl-matrix-none/delivery", {})
    ],
    "alliance ledger: hours": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/hours/p-matrix-none", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/hours/p-matrix-none/entries", {}),
    ],
    "alliance ledger: hours lists": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/hours-entries?community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/hours-export?community_id={s.community_id}&year=2026", {}),
    ],
    "alliance ledger: correct hours": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/alliance/hours-entries/h-matrix-none/corrections",
            {"json": {"hours": -1, "reason": "矩阵"}},
        )
    ],
    "alliance ledger: time-bank rules": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/timebank-rules", {})],
    "alliance ledger: set time-bank rules": [
        lambda t, s: (
            "PUT",
            f"/api/v1/tenants/{t}/alliance/timebank-rules",
            {"json": {"task_hours": [{"call_type": "x", "hours": 1}]}},
        )
    ],
    "alliance ledger: funds": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/funds?community_id={s.community_id}", {}),
        lambda t, s: (
            "GET",
            f"/api/v1/tenants/{t}/alliance/fund-entries?community_id={s.community_id}&page_size=1",
            {},
        ),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/alliance/fund-months?community_id={s.community_id}", {}),
    ],
    "alliance ledger: allocate and spend": [
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/alliance/fund-allocations",
            {"json": {"community_id": s.community_id, "fund": "running", "amount_fen": 1, "source": "矩阵"}},
        ),
        lambda t, s: (
            "POST",
            f"/api/v1/tenants/{t}/alliance/fund-spendings",
            {
                "json": {
                    "community_id": s.community_id,
                    "fund": "running",
                    "amount_fen": 10**11,
                    "for_kind": "activity",
                    "for_id": s.activity_id,
                }
            },
        ),
    ],
    # ---- evaluation: measures and the quarterly boards
    "evaluation measures: read": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/evaluation/measures?community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/evaluation/measures/subjects?community_id={s.community_id}", {}),
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/evaluation/rates?community_id={s.community_id}", {}),
    ],
    "evaluation boards: read": [
        lambda t, s: ("GET", f"/api/v1/tenants/{t}/evaluation/boards?quarter=2025Q1&community_id={s.community_id}", {})
    ],
    "evaluation weights: read": [lambda t, s: ("GET", f"/api/v1/tenants/{t}/evaluation/weights", {})],
    "evaluation weights: set": [
        lambda t, s: (
            "PUT",
            f"/api/v1/tenants/{t}/evaluation/weights",
            {"json": {"weights": [{"component": "x", "weight": 1}]}, "headers": {"If-Match": '"1"'}},
        )
    ],
    "evaluation measures: rebuild": [
        lambda t, s: ("POST", "/api/v1/evaluation/rebuilds", {"json": {"tenant": t, "quarter": "x"}})
    ],
    # ---- end evaluation measures
}
# ---- Evaluation: ratings (评单; gateway/routes_ratings.py). The reporter's routes admit the public and
# residents (the service then asks intake whether the caller reported the issue: the seed's follow-up code says
# so, sent in X-Follow-Code); the issue is not verified, so rating and rejecting are 409 not_verified. Staff
# read the ratings and the windows; a unit rating names the seed's unit with a person who is no resident
# representative (400), a member's placeholder helper is nobody of the community (400); the windows are set
# with a stale If-Match (412). Open311's follow takes the code in the form body.
RESIDENTS = {"anonymous", "public", "resident"}
EXPECTED.update(
    {
        "ratings: the reporter follows": (RESIDENTS, True),
        "ratings: the reporter rates": (RESIDENTS, True),
        "ratings: the reporter rejects the result": (RESIDENTS, True),
        "ratings: list": (STAFF, True),
        "ratings: rate a unit": (DISPATCHERS, True),
        "ratings: settings": (STAFF, True),
        "ratings: set settings": ({"subdistrict_admin"}, True),
        "open311: follow": (EVERYONE, False),
    }
)
COMMUNITY_B.update({"ratings: list": ("403", "403"), "ratings: rate a unit": ("403",)})
THROUGH.update(
    {
        "ratings: the reporter rates": {409},
        "ratings: the reporter rejects the result": {409},
        "ratings: rate a unit": {400},
        "ratings: set settings": {412},
    }
)
# A resident's account that did not report the seed issue, with the code, is its reporter by the code; without
# one it would be 403 not_reporter, the service's answer after the policy admitted the call.
VIEW_REFUSALS = VIEW_REFUSALS | {"not_reporter"}


def found_code(report: dict[str, Any]) -> str:
    return str(report.get("follow_code") or "")


def code(s: Seed) -> dict[str, str]:
    return {"X-Follow-Code": s.follow_code}


def seed_ratings(system: System, tenant: str, seed: Seed) -> Seed:
    """A member unit of the seed's community (to rate)."""
    unit = {
        "community_id": seed.community_id,
        "name_zh": f"矩阵物业{unique()}",
        "kind": "property_company",
        "joined_on": "2024-05-01",
    }
    resp = requests.post(
        f"{system.gateway}/api/v1/tenants/{tenant}/org/member-units", json=unit, headers=admin(system), timeout=10
    )
    assert resp.status_code == 201, resp.text
    return replace(seed, unit_id=resp.json()["id"])


EVALUATION = "/api/v1/tenants/{t}/evaluation"
CALLS.update(
    {
        "ratings: the reporter follows": [
            lambda t, s: ("GET", f"/api/v1/tenants/{t}/issues/{s.issue_id}/follow", {"headers": code(s)})
        ],
        "ratings: the reporter rates": [
            lambda t, s: (
                "POST",
                f"/api/v1/tenants/{t}/issues/{s.issue_id}/rating",
                {"headers": code(s), "json": {"score": 5, "comment": "矩阵"}},
            )
        ],
        "ratings: the reporter rejects the result": [
            lambda t, s: (
                "POST",
                f"/api/v1/tenants/{t}/issues/{s.issue_id}/result-rejection",
                {"headers": code(s), "json": {"reason": "矩阵"}},
            )
        ],
        "ratings: list": [
            lambda t, s: (
                "GET",
                f"{EVALUATION.format(t=t)}/issue-ratings?page_size=1&community_id={s.community_id}",
                {},
            ),
            lambda t, s: (
                "GET",
                f"{EVALUATION.format(t=t)}/unit-ratings?page_size=1&community_id={s.community_id}",
                {},
            ),
        ],
        "ratings: rate a unit": [
            lambda t, s: (
                "POST",
                f"{EVALUATION.format(t=t)}/unit-ratings",
                {"json": {"unit_id": s.unit_id, "score": 4, "rater_person_id": s.person_id}},
            )
        ],
        "ratings: settings": [lambda t, s: ("GET", f"{EVALUATION.format(t=t)}/rating-settings", {})],
        "ratings: set settings": [
            lambda t, s: (
                "PUT",
                f"{EVALUATION.format(t=t)}/rating-settings",
                {"headers": {"If-Match": '"999"'}, "json": {"rating_window_days": 30, "rejection_window_days": 7}},
            )
        ],
        "open311: follow": [
            lambda t, s: (
                "POST",
                f"/open311/v2/requests/{s.issue_id}/follow.json",
                {"data": {"jurisdiction_id": t, "follow_code": s.follow_code}},
            )
        ],
    }
)


# (name, role, the tenant its token is scoped to): anonymous, every token role on OWN, an admin on '*'.
PRINCIPALS = [
    ("anonymous", "anonymous", ""),
    *((f"{r}@own", r, OWN) for r in TOKEN_ROLES),
    ("admin@*", "subdistrict_admin", "*"),
]


def request_body(tenant: str, seed: Seed) -> dict[str, Any]:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    return {
        "kind": "data_access",
        "purpose": "矩阵测试：核对成员单位台账",
        "tenant": tenant,
        "community_id": seed.community_id,
        "public_affairs_item_id": seed.item_id,
        "funding": {"amount_yuan": 1000, "source": "区财政", "working_conditions": "派员"},
        "starts_on": today.isoformat(),
        "ends_on": (today + timedelta(days=7)).isoformat(),
        "operations": ["org.read:member-units"],
        "fields": ["name_zh"],
    }


def admin(system: System) -> dict[str, str]:
    return system.auth("subdistrict_admin", "*")


def new_account(tenant: str) -> dict[str, Any]:
    return {
        "username": unique("matrix"),
        "display_name": "矩阵居民",
        "role": "resident",
        "tenants": [tenant],
        "password": PASSWORD,
    }


def seed_account(system: System, tenant: str) -> str:
    resp = requests.post(f"{system.gateway}/api/v1/users", json=new_account(tenant), headers=admin(system), timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["username"])


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def issue_at(point: tuple[float, float]) -> dict[str, Any]:
    return {**ISSUE, "location": {"lat": point[0], "lon": point[1], "address": "矩阵测试"}}


def seed_tenant(
    system: System,
    tenant: str,
    community_id: str = TEST_COMMUNITY,
    grid_id: str = f"{TEST_COMMUNITY}-g",
    point: tuple[float, float] = TEST_POINT,
) -> Seed:
    """Records of one community: an issue at `point` (with a photo and a contact), a compound, a public-affairs
    item, an import job a community worker of the community started, and a department's request on them,
    approved."""
    base = f"{system.gateway}/api/v1/tenants/{tenant}"
    photo = {"filename": "灯.png", "content_type": "image/png", "content_base64": base64.b64encode(PNG).decode()}
    report = {**issue_at(point), "contact": {"name": "矩阵居民", "phone": "13800001111"}, "attachments": [photo]}
    issue = requests.post(f"{base}/issues", json=report, timeout=10)
    assert issue.status_code == 201, issue.text
    compound = {
        "grid_id": grid_id,
        "name_zh": f"矩阵小区{unique()}",
        "address": "1号",
        "point": dict(zip(("lat", "lon"), point, strict=True)),
    }
    resp = requests.post(f"{base}/org/compounds", json=compound, headers=admin(system), timeout=10)
    assert resp.status_code == 201, resp.text
    compound_id = resp.json()["id"]
    item = {"community_id": community_id, "mode": "assist", "title_zh": f"矩阵事项{unique()}"}
    resp = requests.post(f"{base}/org/public-affairs-items", json=item, headers=admin(system), timeout=10)
    assert resp.status_code == 201, resp.text
    found = issue.json()["issue"]
    worker = (
        system.auth("community_worker", tenant)
        if community_id == TEST_COMMUNITY
        else system.worker_auth(tenant, community_id)
    )
    job = requests.post(
        f"{base}/org/people/import-jobs?format=csv&dry_run=true", data=b"a,b\n", headers=worker, timeout=10
    )
    assert job.status_code == 202, job.text
    seed = Seed(
        found["id"],
        community_id,
        compound_id,
        resp.json()["id"],
        "",
        "",
        attachment_id=found["attachments"][0]["id"],
        point=point,
        job_id=job.json()["id"],
        follow_code=found_code(issue.json()),
    )
    requests_url = f"{system.gateway}/api/v1/department-requests"
    filed = requests.post(
        requests_url,
        json=request_body(tenant, seed),
        headers=system.auth("district_department", "*"),
        timeout=10,
    )
    assert filed.status_code == 201, filed.text
    request_id = filed.json()["id"]
    approved = requests.post(
        f"{requests_url}/{request_id}/approve", headers=system.auth("district_approver", "*"), timeout=10
    )
    assert approved.status_code == 200, approved.text
    return replace(seed, request_id=request_id, grant_id=approved.json()["id"])


def seed_community_b(system: System, tenant: str) -> Seed:
    """A community of its own with one small grid, somewhere no other test draws one, and its records."""
    base = f"{system.gateway}/api/v1/tenants/{tenant}/org"
    lat, lon = round(random.uniform(36.45, 36.55), 4), round(random.uniform(117.45, 117.55), 4)
    community = requests.post(
        f"{base}/communities", json={"name_zh": f"矩阵社区{unique()}"}, headers=admin(system), timeout=10
    )
    assert community.status_code == 201, community.text
    cid = community.json()["id"]
    grid = {
        "community_id": cid,
        "name_zh": "矩阵网格",
        "boundary_geojson": Rect(lon - 0.003, lat - 0.003, lon + 0.003, lat + 0.003).geojson(),
    }
    resp = requests.post(f"{base}/grids", json=grid, headers=admin(system), timeout=10)
    assert resp.status_code == 201, resp.text
    return seed_tenant(system, tenant, cid, resp.json()["id"], (lat, lon))


def meeting_body(seed: Seed, key: str) -> dict[str, Any]:
    return {
        "community_id": seed.community_id,
        "title": "矩阵会议",
        "starts_at": (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).isoformat(),
        "online": True,
        "online_link": "https://meet.example/matrix",
        "invitees": [{"kind": "person", "id": seed.person_id}],
        "idempotency_key": key,
    }


def seed_meeting(system: System, tenant: str, seed: Seed) -> Seed:
    """A person of the seed's community and an online meeting of the community tomorrow inviting them."""
    base = f"{system.gateway}/api/v1/tenants/{tenant}"
    person = {"community_id": seed.community_id, "name_zh": "矩阵党员", "roles": ["party_member"]}
    resp = requests.post(f"{base}/org/people", json=person, headers=admin(system), timeout=10)
    assert resp.status_code == 201, resp.text
    seed = replace(seed, person_id=resp.json()["id"])
    resp = requests.post(
        f"{base}/alliance/meetings", json=meeting_body(seed, unique()), headers=admin(system), timeout=15
    )
    assert resp.status_code == 201, resp.text
    return replace(seed, meeting_id=resp.json()["id"])


def seed_dispatch(system: System, tenant: str, seed: Seed) -> Seed:
    """The seed issue's task and call (dispatch opens them shortly after the issue), and a webhook."""
    base = f"{system.gateway}/api/v1/tenants/{tenant}"

    def task() -> Any:
        return requests.get(f"{base}/issues/{seed.issue_id}", headers=admin(system), timeout=10).json()["task"]

    task_id = wait_for(task)["id"]

    def whistle() -> str:
        return str(requests.get(f"{base}/tasks/{task_id}", headers=admin(system), timeout=10).json()["whistle_id"])

    hook = requests.post(f"{base}/webhooks", json=WEBHOOK, headers=admin(system), timeout=10)
    assert hook.status_code == 201, hook.text
    return replace(seed, task_id=task_id, whistle_id=wait_for(whistle), webhook_id=hook.json()["webhook"]["id"])


def alliance_post(community_id: str) -> dict[str, Any]:
    start = datetime.now(ZoneInfo("UTC")) + timedelta(days=1)
    shift = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat(), "capacity": 5}
    return {"community_id": community_id, "name": "矩阵岗", "shifts": [shift]}


def alliance_activity(community_id: str) -> dict[str, Any]:
    start = datetime.now(ZoneInfo("UTC")) + timedelta(days=1)
    return {
        "community_id": community_id,
        "title": "矩阵活动",
        "kind": "cleanup",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "capacity": 5,
    }


def seed_alliance(system: System, tenant: str, seed: Seed) -> Seed:
    """A post with a shift tomorrow, a person's claim of it and an activity, in the seed's community."""
    base = f"{system.gateway}/api/v1/tenants/{tenant}/alliance"
    post = requests.post(f"{base}/posts", json=alliance_post(seed.community_id), headers=admin(system), timeout=10)
    assert post.status_code == 201, post.text
    shift_id = post.json()["shifts"][0]["id"]
    claimant = {"claimant": {"kind": "person", "id": unique("matrix-p")}}
    claim = requests.post(f"{base}/shifts/{shift_id}/claims", json=claimant, headers=admin(system), timeout=10)
    assert claim.status_code == 201, claim.text
    act = requests.post(
        f"{base}/activities", json=alliance_activity(seed.community_id), headers=admin(system), timeout=10
    )
    assert act.status_code == 201, act.text
    return replace(
        seed, post_id=post.json()["id"], shift_id=shift_id, claim_id=claim.json()["id"], activity_id=act.json()["id"]
    )


# (label, tenant): community A of OWN (the community worker's), community B of OWN, community A of OTHER.
TARGETS = (("own", OWN), ("own/B", OWN), ("other", OTHER))


@pytest.fixture(scope="module")
def seeds(system: System) -> dict[str, Seed]:
    made = {
        "own": seed_tenant(system, OWN),
        "own/B": seed_community_b(system, OWN),
        "other": seed_tenant(system, OTHER),
    }
    return {
        label: seed_ratings(
            system,
            tenant,
            seed_alliance(
                system,
                tenant,
                seed_meeting(
                    system,
                    tenant,
                    seed_dispatch(system, tenant, replace(made[label], username=seed_account(system, tenant))),
                ),
            ),
        )
        for label, tenant in TARGETS
    }


def test_through_statuses_refuse_the_request_never_the_caller_nor_fail() -> None:
    assert set(THROUGH) <= set(EXPECTED)
    assert all(400 <= code < 500 and code not in (401, 403) for codes in THROUGH.values() for code in codes)


OUT_OF_SCOPE = "403 community_out_of_scope"
NOT_FOUND = "404 not_found"


def expected(family: str, role: str, scope: str, tenant: str, label: str = "", call: int = 0) -> str:
    """'ok' (a 2xx, or one of the family's THROUGH statuses), '401' or '403'; for a community worker on
    community B's records, COMMUNITY_B's answer (403 community_out_of_scope, 404 not_found)."""
    allowed, scoped = EXPECTED[family]
    if role not in allowed:
        return "401" if role == "anonymous" and family not in API_KEY else "403"
    if scoped and role != "anonymous" and role not in SCOPE_FREE.get(family, set()) and scope not in ("*", tenant):
        return "403"
    if label == "own/B" and role == "community_worker" and family in COMMUNITY_B:
        return {"403": OUT_OF_SCOPE, "404": NOT_FOUND}.get(COMMUNITY_B[family][call], "ok")
    return "ok"


def outcome(family: str, resp: requests.Response, want: str) -> str:
    """What the answer says, in expected()'s words: a community refusal by its code, a 404 as not_found when
    that was asked for (a missing record is "through" for some families), anything else as before."""
    json_error = resp.status_code >= 400 and resp.headers.get("Content-Type", "").startswith("application/json")
    body = resp.json() if json_error else None
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if code in VIEW_REFUSALS:
        return "ok"
    if resp.status_code == 403 and code == "community_out_of_scope":
        return OUT_OF_SCOPE
    if resp.status_code == 404 and code == "not_found" and (want == NOT_FOUND or 404 not in THROUGH.get(family, ())):
        return NOT_FOUND
    if resp.status_code in (401, 403):
        return str(resp.status_code)
    if 200 <= resp.status_code < 300 or resp.status_code in THROUGH.get(family, set()):
        return "ok"
    return f"unexpected {resp.status_code}: {resp.text[:200]}"


@pytest.mark.parametrize(("name", "role", "scope"), PRINCIPALS, ids=[p[0] for p in PRINCIPALS])
def test_role_x_tenant_x_community_x_route_family(
    system: System, seeds: dict[str, Seed], name: str, role: str, scope: str
) -> None:
    headers = {} if role == "anonymous" else system.auth(role, scope)
    mismatches = []
    for family, calls in CALLS.items():
        for label, tenant in TARGETS:
            if label == "own/B" and family not in COMMUNITY_B:
                continue  # the same on every community of the tenant: asked once, on community A
            for n, call in enumerate(calls):
                method, path, kw = call(tenant, seeds[label])
                kw = dict(kw)
                sent = {**headers, **kw.pop("headers", {})}
                if family in API_KEY:  # the token as the form's api_key, no Authorization header
                    token = headers.get("Authorization", "").removeprefix("Bearer ")
                    kw, sent = {"data": {**kw["data"], **({"api_key": token} if token else {})}}, {}
                resp = requests.request(method, system.gateway + path, headers=sent, timeout=10, **kw)
                want = expected(family, role, scope, tenant, label, n)
                got = outcome(family, resp, want)
                if want != got:
                    mismatches.append(f"{family:24} {label:5} {method} {path}: want {want}, got {got}")
                if resp.status_code in (401, 403) and path.startswith("/open311/"):  # the spec's error shape
                    [err311] = resp.json()
                    assert err311["code"] == resp.status_code and err311["description"]
                elif resp.status_code in (401, 403):
                    err = resp.json()["error"]
                    assert err["request_id"] == resp.headers["X-Request-Id"] and err["message"]
                    if resp.status_code == 401:
                        assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
                    elif err["code"] == "forbidden":
                        assert repr(role) in err["message"]  # names the role and what is needed
                    elif err["code"] == "community_out_of_scope":
                        assert "无权访问该社区数据" in err["message"]
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
    token, _ = tokens.create(sub, "community_worker", [OWN], days=1, community=TEST_COMMUNITY)
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


# ---- evaluation: verification (验单; gateway/routes_verification.py). The seed's task is open (not done): a
# round or a check of it is 409 (task_not_done) once the policy let the call through; rounds and checks named
# here do not exist (404); rules that do not validate are 400. A community worker of A naming B's community is
# 403, B's task 404 as a missing one.
EXPECTED.update(
    {
        "verification: queue": (STAFF, True),
        "verification: review rounds": (STAFF, True),
        "verification: convene a review round": (STAFF, True),
        "verification: read and vote on a round": (DISPATCHERS, True),
        "verification: close a review round": (STAFF, True),
        "verification: on-site checks": (STAFF, True),
        "verification: record an on-site check": (STAFF, True),
        "verification: on-site check": (STAFF, True),
        "verification: rules (read)": (STAFF, True),
        "verification: rules (change)": ({"subdistrict_admin"}, True),
    }
)
COMMUNITY_B.update(
    {
        "verification: queue": ("403",),
        "verification: review rounds": ("403",),
        "verification: convene a review round": ("403",),
        "verification: on-site checks": ("403",),
        "verification: record an on-site check": ("404",),
    }
)
THROUGH.update(
    {
        "verification: convene a review round": {409},
        "verification: read and vote on a round": {404},
        "verification: close a review round": {404},
        "verification: record an on-site check": {409},
        "verification: on-site check": {404},
        "verification: rules (change)": {400},
    }
)
_EV = "/api/v1/tenants/{t}/evaluation"


def _round_body(s: Seed) -> dict[str, Any]:
    return {
        "community_id": s.community_id,
        "title": "矩阵评议",
        "task_ids": [s.task_id],
        "reviewers": [{"id": "matrix-reviewer", "kind": "party_committee"}],
        "quorum": 1,
    }


CALLS.update(
    {
        "verification: queue": [
            lambda t, s: ("GET", f"{_EV.format(t=t)}/verification-queue?community_id={s.community_id}", {})
        ],
        "verification: review rounds": [
            lambda t, s: ("GET", f"{_EV.format(t=t)}/review-rounds?community_id={s.community_id}&page_size=1", {})
        ],
        "verification: convene a review round": [
            lambda t, s: ("POST", f"{_EV.format(t=t)}/review-rounds", {"json": _round_body(s)})
        ],
        "verification: read and vote on a round": [
            lambda t, s: ("GET", f"{_EV.format(t=t)}/review-rounds/rr-matrix-none", {}),
            lambda t, s: (
                "POST",
                f"{_EV.format(t=t)}/review-rounds/rr-matrix-none/votes",
                {"json": {"task_id": s.task_id, "reviewer_id": "matrix-reviewer", "pass": True}},
            ),
        ],
        "verification: close a review round": [
            lambda t, s: ("POST", f"{_EV.format(t=t)}/review-rounds/rr-matrix-none/close", {})
        ],
        "verification: on-site checks": [
            lambda t, s: ("GET", f"{_EV.format(t=t)}/onsite-checks?community_id={s.community_id}", {})
        ],
        "verification: record an on-site check": [
            lambda t, s: (
                "POST",
                f"{_EV.format(t=t)}/onsite-checks",
                {"json": {"task_id": s.task_id, "lat": s.point[0], "lon": s.point[1], "pass": True}},
            )
        ],
        "verification: on-site check": [
            lambda t, s: ("GET", f"{_EV.format(t=t)}/onsite-checks/oc-matrix-none", {}),
            lambda t, s: ("GET", f"{_EV.format(t=t)}/onsite-checks/oc-matrix-none/photos/p1", {}),
        ],
        "verification: rules (read)": [lambda t, s: ("GET", f"{_EV.format(t=t)}/verification-rules", {})],
        "verification: rules (change)": [
            lambda t, s: (
                "PUT",
                f"{_EV.format(t=t)}/verification-rules",
                {"json": {"rules": [{"call_type": "x"}]}, "headers": {"If-Match": '"0"'}},
            )
        ],
    }
)
# ---- end verification


# publications (gateway/routes_publications.py). Staff read the tenant's versions
# (drafts too; the content is public by construction, so a community worker reads the tenant's), the subdistrict
# admin drafts, reviews and releases; the public routes need no log-in and admit any role but the district ones
# and ops (a token is held to its tenants there too). Nothing is released for the seed: a version named here is
# 404 (through), a draft's body with a bad period 400; the Atom feeds are there, empty.
PUBLICATION_PUBLIC = {"anonymous", "public", "resident", "member", "community_worker", "subdistrict_admin"}
_PUB = "/api/v1/tenants/{t}/publications"
_PUBLIC = "/api/v1/public/tenants/{t}"
EXPECTED.update(
    {
        "publications: read": (STAFF, True),
        "publications: draft": ({"subdistrict_admin"}, True),
        "publications: review and release": ({"subdistrict_admin"}, True),
        "publications: public": (PUBLICATION_PUBLIC, True),
    }
)
THROUGH.update(
    {
        "publications: read": {404},
        "publications: draft": {400},
        "publications: review and release": {404},
        "publications: public": {404},
    }
)
CALLS.update(
    {
        "publications: read": [
            lambda t, s: ("GET", f"{_PUB.format(t=t)}?scope={s.community_id}&page_size=1", {}),
            lambda t, s: ("GET", f"{_PUB.format(t=t)}/monthly:{s.community_id}:2025-01:v1", {}),
            lambda t, s: ("GET", f"{_PUB.format(t=t)}/monthly:{s.community_id}:2025-01:v1/channels/json", {}),
        ],
        "publications: draft": [
            lambda t, s: (
                "POST",
                _PUB.format(t=t),
                {"json": {"kind": "monthly", "scope": s.community_id, "period": "2025-13"}},
            )
        ],
        "publications: review and release": [
            lambda t, s: (
                "POST",
                f"{_PUB.format(t=t)}/monthly:{s.community_id}:2025-01:v1/review",
                {"json": {"approve": True}},
            ),
            lambda t, s: ("POST", f"{_PUB.format(t=t)}/monthly:{s.community_id}:2025-01:v1/release", {}),
        ],
        "publications: public": [
            lambda t, s: ("GET", f"{_PUBLIC.format(t=t)}/publications?scope={s.community_id}&page_size=1", {}),
            lambda t, s: ("GET", f"{_PUBLIC.format(t=t)}/publications/monthly:{s.community_id}:2025-01", {}),
            lambda t, s: (
                "GET",
                f"{_PUBLIC.format(t=t)}/publications/monthly:{s.community_id}:2025-01:v1/channels/json",
                {},
            ),
            lambda t, s: ("GET", f"{_PUBLIC.format(t=t)}/ledger?period=2025-01", {}),
            lambda t, s: ("GET", f"{_PUBLIC.format(t=t)}/feed.atom", {}),
            lambda t, s: ("GET", f"{_PUBLIC.format(t=t)}/communities/{s.community_id}/feed.atom", {}),
        ],
    }
)
