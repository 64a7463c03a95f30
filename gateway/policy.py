"""Who may call what: ONE table, keyed by Flask endpoint, enforced in one before_request hook.

Default deny: a route missing from POLICY is refused for everyone (and tests/unit/test_gateway_policy.py
fails, so a new route cannot forget its line). For each route the table says which roles may call it
and whether it is tenant-scoped: then the principal's tenants must include the path's {tenant}
(`*` = every tenant). The anonymous caller is the role `public`; on a tenant-scoped route it may act
on any tenant (public reporting) unless the route does not admit `public` at all.

Refusals: 401 when the caller is anonymous and the route needs a token, 403 naming the role (or the
tenant scope) and what the route needs otherwise. District departments get no default access to
anything tenant-scoped: their access comes only from approved, scoped grants (gateway/department.py).
Members (成员单位/个人) are bound to one helper in one tenant: on the dispatch routes open to them
they act only as that helper (gateway/routes_dispatch.py), and on nothing else.

Community workers (社区工作者) work for one community of one tenant: their token or account carries it
(Principal.community; one without is refused at authentication, 403 `community_required`). Each line
admitting them says how they are held to it (`community`, 社区范围):

- TENANT_WIDE: not one community's data (the tenant's categories and rules, which community a place is
  in, the helpers that fit a need, health, docs, log-in): as for any role.
- OWN_LIST: a list or count, limited to their community; a `community_id` naming another is 403
  `community_out_of_scope` (decide, before the view), and the view sends their own on when none is named.
- OWN_RECORD: the path (or a call's body) names a record: it is looked up before the view runs and one of
  another community is 404 `not_found`, in the words a missing record gets. 404 rather than 403, so that
  an id never confirms that another community's issue, task or person exists (a 403 would say "it is
  there, but not yours"); naming a community (a filter, a new record's place) is 403, as that says nothing
  the caller did not send.
- NEW_RECORD: creates records; one placed in another community is 403 `community_out_of_scope` (the
  community the body names here; the one the org service derives from a parent, or each spreadsheet row's,
  there). A new community or a tenant-level record (the responsibility list) is never a community worker's.
- ANYWHERE: reporting an issue. A community worker may report one wherever it lies in its tenant: it is
  filed in the community its location lies in (intake places it) and leaves the worker's hands, as a
  resident's report would. A resident who stops a 社区 worker about the next community's broken lamp is not
  turned away (首问负责: whoever is asked first takes the report), and the community it belongs to
  handles it (属地管理); the worker reads back what it filed in the answer, not later.

The services check the same again (services/common/community.py) and answer in the same words, so the
gateway is not trusted alone. `python -m gateway.policy` prints the table (role x route family, and the
community scope) as Markdown.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, Response, g, request
from prometheus_client import Counter

from gateway import community, department
from gateway.errors import ApiError, error_response
from gateway.governance.domain import ASSISTANCE_OPERATION
from gateway.governance.store import GovernanceStore, current_audit, current_store
from gateway.identity import Identity, challenge, identify
from gateway.tokens import TokenStore
from services.common.audit import AuditLog
from services.common.errors import UnknownTenant
from services.common.principal import COMMUNITY_ROLE, ROLES, Principal
from services.common.tenants import get_tenant

log = logging.getLogger("gateway.policy")

ANYONE = frozenset(ROLES)
STAFF = frozenset({"community_worker", "subdistrict_admin"})
REPORTERS = frozenset({"public", "resident", "community_worker", "subdistrict_admin"})
ACCOUNT_ADMINS = frozenset({"subdistrict_admin", "ops"})
# Dispatch: staff run it; members answer calls, claim and work on their own tasks as their bound helper.
MEMBERS = frozenset({"member"})
DISPATCHERS = STAFF | MEMBERS
SUBDISTRICT_ADMIN = frozenset({"subdistrict_admin"})
OPS = frozenset({"ops"})
APPROVERS = frozenset({"district_approver"})
DEPARTMENTS = frozenset({"district_department"})
REQUEST_READERS = frozenset({"district_approver", "district_department", "subdistrict_admin"})
GRANT_READERS = REQUEST_READERS | STAFF
FRONTDOOR = "frontdoor."  # POLICY keys of the gRPC front door's methods (not Flask endpoints)
REFUSALS = Counter(
    "hongling_gateway_refusals_total", "Requests the gateway's policy refused.", ["route", "role", "status"]
)


# 社区范围: how a community worker is held to its community on a route (see the module's docstring).
TENANT_WIDE = "tenant-wide"
OWN_LIST = "own list"
OWN_RECORD = "own record"
NEW_RECORD = "new record"
ANYWHERE = "anywhere"
COMMUNITY_SCOPES = {
    TENANT_WIDE: "whole tenant",
    OWN_LIST: "own community only (another: 403)",
    OWN_RECORD: "own community's (another's: 404)",
    NEW_RECORD: "in own community (another: 403)",
    ANYWHERE: "anywhere in the tenant (首问负责)",
}


@dataclass(frozen=True)
class Rule:
    family: str  # what the route is, for messages and the printed table
    roles: frozenset[str]
    tenant_scoped: bool
    # Roles honoured only on a direct loopback connection (no proxy header), e.g. an unauthenticated scraper.
    local_only: frozenset[str] = frozenset()
    # A district department may call this route only under an approved grant covering this operation
    # (formatted with the path's parameters, e.g. "org.read:{collection}"); "" = never.
    grant: str = ""
    # How a community worker is held to its community here (COMMUNITY_SCOPES); "" exactly when the line does
    # not admit community workers.
    community: str = ""
    # OWN_RECORD, NEW_RECORD: what the request names, looked up before the view runs (gateway/community.py
    # RESOLVERS: issue, issues, task, call, org, grant); "" where only the service can tell (NEW_RECORD: a
    # spreadsheet's rows; OWN_RECORD: an import job, which a community worker reads only if it started it).
    record: str = ""

    def admits(self, role: str) -> bool:
        return role in self.roles or (role == "district_department" and bool(self.grant))


POLICY: dict[str, Rule] = {
    # Probes and the tenant list: anyone, no tenant.
    "healthz": Rule("health", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "readyz": Rule("health", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    # Request counts and latencies by route: ops with a token anywhere; unauthenticated only from this host.
    "metrics": Rule("metrics", frozenset({"ops", "public"}), tenant_scoped=False, local_only=frozenset({"public"})),
    "tenants": Rule("tenants list", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    # Issues: anyone may report one and read it back by its (unguessable) id; listing is for staff. A community
    # worker reports anywhere in its tenant (filed where it lies, 首问负责), and reads, lists, counts and
    # handles (reclassify, contact, files) its own community's issues only; categories are the tenant's.
    "issues.create_issue": Rule("issues: report", REPORTERS, tenant_scoped=True, community=ANYWHERE),
    # District departments read issues only under a data-access grant (intake.read:issues).
    "issues.get_issue": Rule(
        "issues: read one",
        REPORTERS,
        tenant_scoped=True,
        grant="intake.read:issues",
        community=OWN_RECORD,
        record="issue",
    ),
    "issues.list_issues": Rule(
        "issues: list", STAFF, tenant_scoped=True, grant="intake.read:issues", community=OWN_LIST
    ),
    # Counts by status (no personal data; the portal's dashboards): staff of the tenant.
    "issues.count_issues": Rule("issues: counts", STAFF, tenant_scoped=True, community=OWN_LIST),
    "issues.get_attachment": Rule(
        "issues: attachments", REPORTERS, tenant_scoped=True, community=OWN_RECORD, record="issue"
    ),
    # Handling an issue: reclassify it, see who reported it (each reveal logged by intake).
    "issues.reclassify_issue": Rule(
        "issues: reclassify", STAFF, tenant_scoped=True, community=OWN_RECORD, record="issue"
    ),
    "issues.reveal_contact": Rule(
        "issues: reporter contact", STAFF, tenant_scoped=True, community=OWN_RECORD, record="issue"
    ),
    # 核实立案: file or decline a report waiting for verification (a community worker: its community's only).
    "issues.decide_filing": Rule(
        "issues: file or decline", STAFF, tenant_scoped=True, community=OWN_RECORD, record="issue"
    ),
    # Categories and classification rules: every reporting client reads them; subdistrict admins set them.
    "issues.get_rules": Rule("issues: categories and rules", REPORTERS, tenant_scoped=True, community=TENANT_WIDE),
    "issues.put_rules": Rule("issues: set rules", frozenset({"subdistrict_admin"}), tenant_scoped=True),
    # A district department hands over an approved assistance task (协助任务) under its grant, within quota.
    "issues.hand_over_task": Rule(
        "issues: hand over an assistance task", frozenset(), tenant_scoped=True, grant=ASSISTANCE_OPERATION
    ),
    # Organisation structure: holds people's personal data; staff of the tenant only.
    # District departments read them only under a data-access grant (gateway/department.py).
    # A community worker reads and changes its own community's records (collections.communities: its own;
    # responsibility-items, the tenant's list: read only; no new community); import: the org service checks
    # each row's community. Which community a place is in and the helpers that fit a need (wherever they are
    # registered, as dispatch's 点将 ranks them) answer for the whole tenant.
    "org.list_items": Rule("org: read", STAFF, tenant_scoped=True, grant="org.read:{collection}", community=OWN_LIST),
    "org.get_item": Rule(
        "org: read", STAFF, tenant_scoped=True, grant="org.read:{collection}", community=OWN_RECORD, record="org"
    ),
    "org.create_item": Rule("org: write", STAFF, tenant_scoped=True, community=NEW_RECORD, record="org"),
    "org.update_item": Rule("org: write", STAFF, tenant_scoped=True, community=OWN_RECORD, record="org"),
    "org.delete_item": Rule("org: write", STAFF, tenant_scoped=True, community=OWN_RECORD, record="org"),
    "org.resolve_location": Rule("org: resolve / candidates", STAFF, tenant_scoped=True, community=TENANT_WIDE),
    "org.find_candidates": Rule("org: resolve / candidates", STAFF, tenant_scoped=True, community=TENANT_WIDE),
    "org.import_sheet": Rule("org: import", STAFF, tenant_scoped=True, community=NEW_RECORD),
    "org.export_sheet": Rule("org: export", STAFF, tenant_scoped=True, community=OWN_LIST),
    # Imports as background jobs: started as an import is; a job is read by whoever started it and the
    # tenant's staff: a community worker lists and reads only the jobs it started (the org service: another's
    # job is 404, as a missing one).
    "org.start_import_job": Rule("org: import", STAFF, tenant_scoped=True, community=NEW_RECORD),
    "org.get_import_job": Rule("org: import jobs", STAFF, tenant_scoped=True, community=OWN_RECORD),
    "org.list_import_jobs": Rule("org: import jobs", STAFF, tenant_scoped=True, community=OWN_LIST),
    # Dispatch (吹号 · 报到 · 认领 · 点将): staff of the tenant run it; members read the whistle board, answer
    # calls, claim, answer their assignment, start and finish the tasks they lead and list their own tasks,
    # always as the helper their credential is bound to (the views enforce it; the service checks again).
    # Residents and the public follow progress through their issue. Verifying is the community's.
    # A community worker runs its own community's calls and tasks (a call's issues must be its own); the
    # deadlines per call type are the tenant's.
    "dispatch.list_whistles": Rule("dispatch: whistle board", DISPATCHERS, tenant_scoped=True, community=OWN_LIST),
    "dispatch.get_whistle": Rule(
        "dispatch: whistle board", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD, record="call"
    ),
    "dispatch.blow_whistle": Rule(
        "dispatch: blow a call", STAFF, tenant_scoped=True, community=OWN_RECORD, record="issues"
    ),
    "dispatch.report_in": Rule(
        "dispatch: report in", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD, record="call"
    ),
    "dispatch.list_tasks": Rule("dispatch: tasks", STAFF, tenant_scoped=True, community=OWN_LIST),
    "dispatch.get_task": Rule("dispatch: tasks", STAFF, tenant_scoped=True, community=OWN_RECORD, record="task"),
    "dispatch.list_overdue": Rule("dispatch: overdue list", STAFF, tenant_scoped=True, community=OWN_LIST),
    "dispatch.my_tasks": Rule("dispatch: my tasks", MEMBERS, tenant_scoped=True),
    "dispatch.claim_task": Rule(
        "dispatch: claim", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD, record="task"
    ),
    "dispatch.rank_candidates": Rule(
        "dispatch: candidates and assignment", STAFF, tenant_scoped=True, community=OWN_RECORD, record="task"
    ),
    "dispatch.assign_task": Rule(
        "dispatch: candidates and assignment", STAFF, tenant_scoped=True, community=OWN_RECORD, record="task"
    ),
    "dispatch.respond_to_assignment": Rule(
        "dispatch: answer an assignment", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD, record="task"
    ),
    "dispatch.transition_task": Rule(
        "dispatch: task transitions", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD, record="task"
    ),
    "dispatch.get_rules": Rule("dispatch: rules", STAFF, tenant_scoped=True, community=TENANT_WIDE),
    "dispatch.put_rules": Rule("dispatch: set rules", SUBDISTRICT_ADMIN, tenant_scoped=True),
    # Alliance: standing posts (认领岗位). Staff define posts and shifts and read rosters and fill rates; members read
    # posts, claim, release and check in as their bound helper (the alliance service refuses another) and list
    # their own claims. A community worker: its own community's posts, shifts and claims (another's: 404 from the
    # service, as a missing one), lists limited to it.
    "alliance_posts.list_posts": Rule("alliance posts: read", DISPATCHERS, tenant_scoped=True, community=OWN_LIST),
    "alliance_posts.get_post": Rule("alliance posts: read", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD),
    "alliance_posts.create_post": Rule("alliance posts: manage", STAFF, tenant_scoped=True, community=NEW_RECORD),
    "alliance_posts.add_shifts": Rule("alliance posts: manage", STAFF, tenant_scoped=True, community=OWN_RECORD),
    "alliance_posts.claim_shift": Rule("alliance posts: claim", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD),
    "alliance_posts.release_claim": Rule(
        "alliance posts: claim", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_posts.check_in": Rule("alliance posts: claim", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD),
    "alliance_posts.shift_roster": Rule("alliance posts: roster", STAFF, tenant_scoped=True, community=OWN_RECORD),
    "alliance_posts.list_claims": Rule("alliance posts: claims", DISPATCHERS, tenant_scoped=True, community=OWN_LIST),
    "alliance_posts.fill_rate": Rule("alliance posts: fill rate", STAFF, tenant_scoped=True, community=OWN_LIST),
    # Alliance: co-building activities (参与共建). Staff publish and record attendance; members read activities,
    # sign up, withdraw and check in as their bound helper, and list their own sign-ups.
    "alliance_activities.list_activities": Rule(
        "alliance activities: read", DISPATCHERS, tenant_scoped=True, community=OWN_LIST
    ),
    "alliance_activities.get_activity": Rule(
        "alliance activities: read", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_activities.publish_activity": Rule(
        "alliance activities: publish", STAFF, tenant_scoped=True, community=NEW_RECORD
    ),
    "alliance_activities.sign_up": Rule(
        "alliance activities: sign up", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_activities.withdraw": Rule(
        "alliance activities: sign up", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_activities.record_attendance": Rule(
        "alliance activities: attendance", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_activities.list_signups": Rule(
        "alliance activities: sign-ups", DISPATCHERS, tenant_scoped=True, community=OWN_LIST
    ),
    # Ops read a tenant's overdue list on a district-wide route (?tenant=, within the token's scope).
    "dispatch.list_overdue_district": Rule("dispatch: overdue list (ops)", OPS, tenant_scoped=False),
    # Alliance ledger (联盟共建: 提供资源, 志愿服务时长, 社区经费; gateway/routes_alliance_ledger.py). Members act for
    # their bound helper (a unit's pledges, a person's own hours); community workers for their own community
    # (a pledge, entry or person of another is 404, a record placed in another is 403: the service checks
    # the records, which it reads anyway); subdistrict admins for the tenant and its time-bank rules.
    "alliance_ledger.list_pledges": Rule(
        "alliance ledger: pledges", DISPATCHERS, tenant_scoped=True, community=OWN_LIST
    ),
    "alliance_ledger.get_pledge": Rule(
        "alliance ledger: pledges", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_ledger.withdraw_pledge": Rule(
        "alliance ledger: pledges", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_ledger.create_pledge": Rule(
        "alliance ledger: pledge", DISPATCHERS, tenant_scoped=True, community=NEW_RECORD
    ),
    "alliance_ledger.list_resource_entries": Rule(
        "alliance ledger: resource list", DISPATCHERS, tenant_scoped=True, community=OWN_LIST
    ),
    "alliance_ledger.confirm_delivery": Rule(
        "alliance ledger: confirm delivery", STAFF, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_ledger.get_hours": Rule("alliance ledger: hours", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD),
    "alliance_ledger.list_person_hours": Rule(
        "alliance ledger: hours", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_ledger.list_hours_entries": Rule(
        "alliance ledger: hours lists", STAFF, tenant_scoped=True, community=OWN_LIST
    ),
    "alliance_ledger.export_hours": Rule("alliance ledger: hours lists", STAFF, tenant_scoped=True, community=OWN_LIST),
    "alliance_ledger.correct_hours": Rule(
        "alliance ledger: correct hours", STAFF, tenant_scoped=True, community=OWN_RECORD
    ),
    "alliance_ledger.get_timebank_rules": Rule(
        "alliance ledger: time-bank rules", STAFF, tenant_scoped=True, community=TENANT_WIDE
    ),
    "alliance_ledger.put_timebank_rules": Rule(
        "alliance ledger: set time-bank rules", SUBDISTRICT_ADMIN, tenant_scoped=True
    ),
    "alliance_ledger.list_fund_balances": Rule("alliance ledger: funds", STAFF, tenant_scoped=True, community=OWN_LIST),
    "alliance_ledger.list_fund_entries": Rule("alliance ledger: funds", STAFF, tenant_scoped=True, community=OWN_LIST),
    "alliance_ledger.list_fund_months": Rule("alliance ledger: funds", STAFF, tenant_scoped=True, community=OWN_LIST),
    "alliance_ledger.allocate_funds": Rule(
        "alliance ledger: allocate and spend", STAFF, tenant_scoped=True, community=NEW_RECORD
    ),
    "alliance_ledger.spend_funds": Rule(
        "alliance ledger: allocate and spend", STAFF, tenant_scoped=True, community=NEW_RECORD
    ),
    # Webhooks (SMS / WeChat gateways, hotline systems): subdistrict admins register and manage them; the
    # signing secret is shown once, in the registration's answer. Ops read them district-wide (?tenant=).
    "webhooks.register_webhook": Rule("webhooks: manage", SUBDISTRICT_ADMIN, tenant_scoped=True),
    "webhooks.list_webhooks": Rule("webhooks: manage", SUBDISTRICT_ADMIN, tenant_scoped=True),
    "webhooks.get_webhook": Rule("webhooks: manage", SUBDISTRICT_ADMIN, tenant_scoped=True),
    "webhooks.set_webhook_active": Rule("webhooks: manage", SUBDISTRICT_ADMIN, tenant_scoped=True),
    "webhooks.delete_webhook": Rule("webhooks: manage", SUBDISTRICT_ADMIN, tenant_scoped=True),
    "webhooks.list_deliveries": Rule("webhooks: manage", SUBDISTRICT_ADMIN, tenant_scoped=True),
    "webhooks.list_webhooks_district": Rule("webhooks: read (ops)", OPS, tenant_scoped=False),
    "webhooks.list_deliveries_district": Rule("webhooks: read (ops)", OPS, tenant_scoped=False),
    # District department requests (审核把关): a department files; a district approver decides; which
    # records each caller sees (own / tenant scope) is gateway/governance/shapes.py.
    "governance.file_request": Rule("department requests: file", DEPARTMENTS, tenant_scoped=False),
    "governance.list_requests": Rule("department requests: read", REQUEST_READERS, tenant_scoped=False),
    "governance.get_request": Rule("department requests: read", REQUEST_READERS, tenant_scoped=False),
    "governance.approve_request": Rule("department requests: decide", APPROVERS, tenant_scoped=False),
    "governance.reject_request": Rule("department requests: decide", APPROVERS, tenant_scoped=False),
    # Grants: the community and subdistrict see every grant on them and every use of it (a community worker:
    # the grants on its own community).
    "governance.get_grant": Rule(
        "grants: read one", GRANT_READERS, tenant_scoped=False, community=OWN_RECORD, record="grant"
    ),
    "governance.list_tenant_grants": Rule("grants: tenant list", STAFF, tenant_scoped=True, community=OWN_LIST),
    "governance.revoke_grant": Rule("grants: revoke", APPROVERS, tenant_scoped=False),
    # The audit log: district approvers (their tenant scope) and subdistrict admins (their tenant);
    # verification: approvers and ops.
    # Approvers (and ops) read a tenant's entries on the district-wide routes (?tenant=): district roles get
    # no tenant-scoped route (tests/unit/test_gateway_policy.py); the views apply the token's tenant scope.
    "audit.list_entries": Rule("audit: read", APPROVERS | {"ops"}, tenant_scoped=False),
    "audit.list_tenant_entries": Rule("audit: read a tenant", frozenset({"subdistrict_admin"}), tenant_scoped=True),
    "audit.export_tenant_entries": Rule("audit: read a tenant", frozenset({"subdistrict_admin"}), tenant_scoped=True),
    "audit.export_entries": Rule("audit: export", APPROVERS | {"ops"}, tenant_scoped=False),
    "audit.verify_chain": Rule("audit: verify", APPROVERS | {"ops"}, tenant_scoped=False),
    # The portal's dashboard (counts and response times from the read models' rollups; no personal data).
    "dashboard.get_dashboard": Rule("dashboard", STAFF, tenant_scoped=True, community=OWN_LIST),
    # The API's own description: the OpenAPI document, the docs page and its static files; anyone.
    # Alliance: joint meetings (共商共议共决; gateway/routes_alliance_meetings.py). The alliance service holds a
    # community worker to its community's meetings (another's is 404 as a missing one) and a member to itself.
    "alliance_meetings.list_meetings": Rule("alliance meetings: list", STAFF, tenant_scoped=True, community=OWN_LIST),
    "alliance_meetings.hot_topics": Rule(
        "alliance meetings: hot topics", STAFF, tenant_scoped=True, community=OWN_LIST
    ),
    "alliance_meetings.list_attendance": Rule(
        "alliance meetings: attendance history", DISPATCHERS, tenant_scoped=True, community=OWN_LIST
    ),
    "alliance_meetings.schedule_meeting": Rule(
        "alliance meetings: schedule", STAFF, tenant_scoped=True, community=NEW_RECORD
    ),
    "alliance_meetings.get_meeting": Rule(
        "alliance meetings: read one", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
    ),
    **{
        f"alliance_meetings.{name}": Rule("alliance meetings: manage", STAFF, tenant_scoped=True, community=OWN_RECORD)
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
    "alliance_meetings.check_in": Rule("alliance meetings: check in", MEMBERS, tenant_scoped=True),
    "alliance_meetings.propose_item": Rule("alliance meetings: propose", MEMBERS, tenant_scoped=True),
    "docs.openapi_json": Rule("api docs", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "docs.asyncapi_json": Rule("api docs", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "docs.docs_page": Rule("api docs", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "docs.docs_asset": Rule("api docs", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    # The portal's pages and files (gateway/routes_portal.py): anyone; every page's data needs a person's token.
    "portal.root": Rule("portal", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "portal.page": Rule("portal", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    # People's sessions: anyone may try to log in (rate-limited) and ask who they are; log-out ends sessions.
    "auth.login": Rule("auth: log in", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "auth.me": Rule("auth: who am I", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "auth.logout": Rule("auth: log out", ANYONE - {"public"}, tenant_scoped=False, community=TENANT_WIDE),
    # People's accounts: ops any; subdistrict admins their own tenants' tenant-level accounts (checked in
    # gateway/routes_auth.py, as the tenant is in the body or query, not the path).
    "users.list_users": Rule("users: manage", ACCOUNT_ADMINS, tenant_scoped=False),
    "users.create_user": Rule("users: manage", ACCOUNT_ADMINS, tenant_scoped=False),
    "users.change_role": Rule("users: manage", ACCOUNT_ADMINS, tenant_scoped=False),
    # Open311 GeoReport v2 (gateway/open311.py, /open311/v2/…): the jurisdiction is the tenant, named by the
    # jurisdiction_id parameter, not the path, so these lines are not tenant-scoped here; the views enforce it.
    # Reading services and requests is public, as the spec has it (Open311 fields only, never contact data).
    # Reporting: the credential is the form field api_key (an hl_ API token), not the Authorization header:
    # the view authenticates it (identity.identify) and applies this same line to it with jurisdiction_id as
    # the tenant (decide, tenant-scoped), so it needs a reporter's role and the jurisdiction in its scope.
    "open311.list_services": Rule("open311: read", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "open311.get_service_definition": Rule("open311: read", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "open311.list_requests": Rule("open311: read", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "open311.get_request": Rule("open311: read", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "open311.get_token": Rule("open311: read", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    "open311.unknown_resource": Rule(
        "open311: read", ANYONE, tenant_scoped=False, community=TENANT_WIDE
    ),  # 404/405, the spec's shape
    "open311.create_request": Rule("open311: report", REPORTERS, tenant_scoped=False, community=ANYWHERE),
    # The gRPC front door for district-department systems (gateway/frontdoor.py), keyed "frontdoor.<Method>"
    # of hongling.frontdoor.v1.DepartmentGateway; the tenant is the request's `tenant` field. District
    # departments only, each call under its grant exactly as on the HTTP routes (org.list_items/get_item,
    # issues.hand_over_task), and their own grants; every call, allowed or refused, is in the audit log.
    f"{FRONTDOOR}ListOrgRecords": Rule(
        "front door: org: read", frozenset(), tenant_scoped=True, grant="org.read:{collection}"
    ),
    f"{FRONTDOOR}GetOrgRecord": Rule(
        "front door: org: read", frozenset(), tenant_scoped=True, grant="org.read:{collection}"
    ),
    f"{FRONTDOOR}HandOverTask": Rule(
        "front door: hand over an assistance task", frozenset(), tenant_scoped=True, grant=ASSISTANCE_OPERATION
    ),
    f"{FRONTDOOR}GetGrant": Rule("front door: grants: read one", DEPARTMENTS, tenant_scoped=False),
    # ---- Evaluation: measures and the quarterly boards (四榜; gateway/routes_measures.py). Staff read their
    # tenant's, a community worker its community's (a list naming another is 403); the tenant's admin sets the
    # weights; ops recount a quarter (a district-wide route naming the tenant, held to the token's scope).
    "measures.get_measures": Rule("evaluation measures: read", STAFF, tenant_scoped=True, community=OWN_LIST),
    "measures.list_measures": Rule("evaluation measures: read", STAFF, tenant_scoped=True, community=OWN_LIST),
    "measures.dashboard_rates": Rule("evaluation measures: read", STAFF, tenant_scoped=True, community=OWN_LIST),
    "measures.get_boards": Rule("evaluation boards: read", STAFF, tenant_scoped=True, community=OWN_LIST),
    "measures.get_weights": Rule("evaluation weights: read", STAFF, tenant_scoped=True, community=TENANT_WIDE),
    "measures.put_weights": Rule("evaluation weights: set", SUBDISTRICT_ADMIN, tenant_scoped=True),
    "measures.rebuild_quarter": Rule("evaluation measures: rebuild", OPS, tenant_scoped=False),
    # ---- end evaluation measures
}


# ---- Evaluation: verification (验单; gateway/routes_verification.py). The evaluation service holds a community
# worker to its community's rounds and checks (another's is 404 as a missing one, a list or a new round naming
# another is 403); a member votes on, and reads, only the rounds it is a named reviewer of. The rules are the
# tenant's: staff read them, subdistrict admins change them.
POLICY.update(
    {
        "verification.list_queue": Rule("verification: queue", STAFF, tenant_scoped=True, community=OWN_LIST),
        "verification.list_rounds": Rule("verification: review rounds", STAFF, tenant_scoped=True, community=OWN_LIST),
        "verification.create_round": Rule(
            "verification: convene a review round", STAFF, tenant_scoped=True, community=NEW_RECORD
        ),
        "verification.get_round": Rule(
            "verification: read and vote on a round", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
        ),
        "verification.cast_vote": Rule(
            "verification: read and vote on a round", DISPATCHERS, tenant_scoped=True, community=OWN_RECORD
        ),
        "verification.close_round": Rule(
            "verification: close a review round", STAFF, tenant_scoped=True, community=OWN_RECORD
        ),
        "verification.list_checks": Rule("verification: on-site checks", STAFF, tenant_scoped=True, community=OWN_LIST),
        "verification.record_check": Rule(
            "verification: record an on-site check", STAFF, tenant_scoped=True, community=OWN_RECORD
        ),
        "verification.get_check": Rule("verification: on-site check", STAFF, tenant_scoped=True, community=OWN_RECORD),
        "verification.get_check_photo": Rule(
            "verification: on-site check", STAFF, tenant_scoped=True, community=OWN_RECORD
        ),
        "verification.get_rules": Rule("verification: rules (read)", STAFF, tenant_scoped=True, community=TENANT_WIDE),
        "verification.put_rules": Rule("verification: rules (change)", SUBDISTRICT_ADMIN, tenant_scoped=True),
    }
)
# ---- end verification

# ---- Publications (一月一公示, 先锋榜, 月度报告; gateway/routes_publications.py). Staff
# of the tenant read every version, drafts too (the content is public by construction, so a community worker reads
# the tenant's as anyone will once released); the subdistrict admin drafts, reviews and releases. The public
# routes need no log-in (the anonymous caller reads any tenant's) and call the service as the public role whoever
# calls: released versions only. A token is held to its tenants there as everywhere; district roles and ops have
# no tenant data by default (their readers read anonymously, as anyone).
PUBLICATION_WRITERS = SUBDISTRICT_ADMIN
PUBLIC_READERS = frozenset({"public", "resident", "member", "community_worker", "subdistrict_admin"})
POLICY.update(
    {
        "publications.list_publications": Rule("publications: read", STAFF, tenant_scoped=True, community=TENANT_WIDE),
        "publications.get_publication": Rule("publications: read", STAFF, tenant_scoped=True, community=TENANT_WIDE),
        "publications.render_publication": Rule("publications: read", STAFF, tenant_scoped=True, community=TENANT_WIDE),
        "publications.create_publication": Rule("publications: draft", PUBLICATION_WRITERS, tenant_scoped=True),
        "publications.review_publication": Rule(
            "publications: review and release", PUBLICATION_WRITERS, tenant_scoped=True
        ),
        "publications.release_publication": Rule(
            "publications: review and release", PUBLICATION_WRITERS, tenant_scoped=True
        ),
        "publications.public_list": Rule(
            "publications: public", PUBLIC_READERS, tenant_scoped=True, community=TENANT_WIDE
        ),
        "publications.public_get": Rule(
            "publications: public", PUBLIC_READERS, tenant_scoped=True, community=TENANT_WIDE
        ),
        "publications.public_render": Rule(
            "publications: public", PUBLIC_READERS, tenant_scoped=True, community=TENANT_WIDE
        ),
        "publications.public_feed": Rule(
            "publications: public", PUBLIC_READERS, tenant_scoped=True, community=TENANT_WIDE
        ),
        "publications.public_community_feed": Rule(
            "publications: public", PUBLIC_READERS, tenant_scoped=True, community=TENANT_WIDE
        ),
        "publications.public_ledger": Rule(
            "publications: public", PUBLIC_READERS, tenant_scoped=True, community=TENANT_WIDE
        ),
    }
)

# ---- Evaluation: ratings (评单; gateway/routes_ratings.py, gateway/open311.py follow_request) ----
# The reporter (the anonymous public with the follow-up code in X-Follow-Code, or the logged-in resident who
# reported) follows an issue, rates it once and may reject its verified result; the evaluation service asks
# intake whether the caller is the reporter, so nobody else gets past it (403 not_reporter). Staff read the
# ratings (a community worker its own community's) and record a resident representative's unit rating; an
# alliance member rates units of its community as itself. The windows are the subdistrict admin's.
RESIDENTS = frozenset({"public", "resident"})
POLICY.update(
    {
        "ratings.follow_issue": Rule("ratings: the reporter follows", RESIDENTS, tenant_scoped=True),
        "ratings.rate_issue": Rule("ratings: the reporter rates", RESIDENTS, tenant_scoped=True),
        "ratings.reject_result": Rule("ratings: the reporter rejects the result", RESIDENTS, tenant_scoped=True),
        "ratings.list_issue_ratings": Rule("ratings: list", STAFF, tenant_scoped=True, community=OWN_LIST),
        "ratings.rate_unit": Rule("ratings: rate a unit", DISPATCHERS, tenant_scoped=True, community=NEW_RECORD),
        "ratings.list_unit_ratings": Rule("ratings: list", STAFF, tenant_scoped=True, community=OWN_LIST),
        "ratings.get_rating_settings": Rule("ratings: settings", STAFF, tenant_scoped=True, community=TENANT_WIDE),
        "ratings.put_rating_settings": Rule("ratings: set settings", SUBDISTRICT_ADMIN, tenant_scoped=True),
        # Open311: the reporter follows its request with the follow-up code in the form body (never the URL).
        "open311.follow_request": Rule("open311: follow", ANYONE, tenant_scoped=False, community=TENANT_WIDE),
    }
)


def is_direct_loopback(remote_addr: str | None, forwarded: bool) -> bool:
    """A connection from this host that did not come through a proxy."""
    if not remote_addr or forwarded:
        return False
    try:
        ip = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _roles(roles: frozenset[str]) -> str:
    return ", ".join(r for r in ROLES if r in roles) or "nobody"


def decide(
    rule: Rule | None,
    endpoint: str,
    identity: Identity,
    tenant: str | None,
    *,
    local: bool,
    community_id: str | None = None,
) -> tuple[Principal, None] | tuple[None, ApiError]:
    """The principal to act as, or the refusal. Pure: no Flask, no I/O (tenant slugs are looked up).
    `community_id`: the community the request's query names (a list's filter), held to a community worker's
    own on OWN_LIST lines; records the request names are checked by `hold_to_community` after this."""
    p = identity.principal
    if rule is None:
        log.error("route %s is not in the policy table: refused (default deny)", endpoint)
        return None, ApiError(403, "forbidden", "this endpoint is not open to anyone (default deny) (拒绝访问)")
    allowed = rule.admits(p.role) and (p.role not in rule.local_only or local)
    if not allowed:
        if identity.anonymous:
            return None, ApiError(
                401,
                "unauthenticated",
                f"{rule.family} needs an API token: send 'Authorization: Bearer <token>' (需要令牌认证)",
                headers=challenge(),
            )
        where = " from this host" if p.role in rule.local_only else ""
        needs = _roles(rule.roles) if rule.roles else ""
        if rule.grant:
            needs = (needs + ", or " if needs else "") + "district_department under an approved grant"
        return None, ApiError(
            403,
            "forbidden",
            f"role {p.role!r} may not use {rule.family}{where}; it needs one of: {needs or 'nobody'} "
            "(当前角色无权访问)",
        )
    if p.role == COMMUNITY_ROLE and p.community is None:  # identify refuses these first; never assume it
        return None, ApiError(403, community.REQUIRED, community.required_message(identity.kind, p.sub))
    if not rule.tenant_scoped:
        return _community(rule, p, community_id)
    if tenant is None:
        log.error("route %s is tenant-scoped but has no {tenant} in its path", endpoint)
        return None, ApiError(403, "forbidden", "this endpoint is misconfigured (default deny) (拒绝访问)")
    try:
        get_tenant(tenant)
    except UnknownTenant as exc:  # a 404 naming the valid tenants, as every tenant route answers
        return None, ApiError(404, "unknown_tenant", exc.message, field="tenant")
    if identity.anonymous:
        return Principal(sub=p.sub, role=p.role, tenants=(tenant,)), None
    if not p.may_act_on(tenant):
        scope = ", ".join(p.tenants) or "no tenant"
        return None, ApiError(
            403,
            "tenant_out_of_scope",
            f"{p.sub!r} ({p.role}) may act on {scope}, not on {tenant!r} (无权访问该街道/镇数据)",
            field="tenant",
        )
    return _community(rule, p, community_id)


def _community(rule: Rule, p: Principal, community_id: str | None) -> tuple[Principal, None] | tuple[None, ApiError]:
    """A community worker's list naming another community is refused; anything else passes here."""
    if p.community is not None and rule.community == OWN_LIST and community_id and community_id != p.community:
        return None, community.out_of_scope(p, community_id)
    return p, None


def install(app: Flask, store: TokenStore) -> None:
    """Authenticate every request and apply POLICY before any view runs."""

    @app.before_request
    def _enforce() -> None:
        g.identity = None
        if request.routing_exception is not None:
            return  # no such route or method: the usual 404/405
        identity = identify(request.headers.get("Authorization"), store, app.extensions.get("hongling.sessions"))
        g.identity = identity
        endpoint = request.endpoint or ""
        rule = POLICY.get(endpoint)
        tenant = (request.view_args or {}).get("tenant")
        forwarded = any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-Ip"))
        local = is_direct_loopback(request.remote_addr, forwarded)
        asked = request.args.get("community_id")
        principal, refusal = decide(rule, endpoint, identity, tenant, local=local, community_id=asked)
        route = request.url_rule.rule if request.url_rule else endpoint
        if refusal is not None:
            REFUSALS.labels(route, identity.principal.role, str(refusal.status)).inc()
            if identity.principal.role == "district_department":
                _audit_department(identity.principal, route, tenant, "refused", {"reason": refusal.code})
            raise refusal
        assert principal is not None
        if principal.role == "district_department":
            if rule is not None and rule.grant and tenant is not None:
                principal = _department_grant(principal, rule, route, tenant)
            else:
                _audit_department(principal, route, tenant, "allowed", {})
        g.principal = principal

    @app.after_request
    def _admitted(resp: Response) -> Response:
        access: department.Access | None = g.get("department_access")
        if access is None or access.recorded:
            return resp
        if resp.status_code < 400:
            # A view that answered a department without admitting the call (a bug): answer nothing.
            log.error("route %s answered a department call it did not admit: refused", request.endpoint)
            access.record_failure("403", "not_admitted")
            return error_response(
                ApiError(403, "forbidden", "this call was not admitted under its grant (default deny) (拒绝访问)")
            )
        code = ""
        if resp.is_json:
            body = resp.get_json(silent=True)
            code = str(((body or {}).get("error") or {}).get("code") or "")
        access.record_failure(str(resp.status_code), code)
        return resp


def hold_to_community() -> None:
    """社区范围 for a request that names a record (OWN_RECORD, NEW_RECORD lines): a community worker's is
    checked against the record's community before the view runs (gateway/community.py check_record: 404
    for another community's record, 403 for a new one placed in another community). Registered after the
    per-caller rate limit, since it reads the record."""
    p: Principal | None = g.get("principal")
    if p is None or p.community is None or request.routing_exception is not None:
        return
    rule = POLICY.get(request.endpoint or "")
    if rule is None or rule.community not in (OWN_RECORD, NEW_RECORD) or not rule.record:
        return
    params = {k: str(v) for k, v in (request.view_args or {}).items()}
    try:
        community.check_record(p, rule.record, rule.community == NEW_RECORD, params.get("tenant"), params)
    except ApiError as err:
        route = request.url_rule.rule if request.url_rule else request.endpoint or ""
        REFUSALS.labels(route, p.role, str(err.status)).inc()
        raise


def _audit_department(p: Principal, route: str, tenant: str | None, outcome: str, detail: dict[str, str]) -> None:
    department.audit_plain_call(
        p,
        outcome=outcome,
        door="http",
        method=f"{request.method} {route}",
        tenant=tenant or "",
        request_id=g.get("request_id") or "",
        detail=detail,
        audit=current_audit(),
    )


def _department_grant(p: Principal, rule: Rule, route: str, tenant: str) -> Principal:
    """Check a department's call against the grant it names; the principal to forward carries the grant."""
    body = request.get_json(silent=True) if request.is_json else None
    task = body.get("title") if isinstance(body, dict) and isinstance(body.get("title"), str) else None
    try:
        access = check_department_grant(
            rule,
            p,
            tenant,
            {k: str(v) for k, v in (request.view_args or {}).items()},
            door="http",
            method=f"{request.method} {route}",
            grant_id=request.headers.get(department.GRANT_HEADER) or "",
            community_id=request.args.get("community_id", ""),
            fields=department.parse_fields(request.args.get("fields")),
            filters=tuple(sorted(k for k in request.args if k not in department.NON_FILTER_ARGS)),
            title=task,
            request_id=g.get("request_id") or "",
            store=current_store(),
            audit=current_audit(),
        )
    except ApiError:
        REFUSALS.labels(route, p.role, "403").inc()
        raise
    g.department_access = access
    return Principal(sub=p.sub, role=p.role, tenants=(tenant,), grant_id=access.grant.id)


def check_department_grant(
    rule: Rule,
    p: Principal,
    tenant: str,
    params: Mapping[str, str],
    *,
    door: str,
    method: str,
    grant_id: str,
    community_id: str,
    fields: tuple[str, ...],
    filters: tuple[str, ...],
    title: str | None,
    request_id: str,
    store: GovernanceStore,
    audit: AuditLog,
) -> department.Access:
    """A district department's call on a grant rule, through either door (HTTP route: `params` are the path's;
    gRPC front door: the request's collection / item_id), checked against the grant it names: the Access to
    admit, or ApiError 403 `outside_grant` naming what is missing (department.check logged the refusal)."""
    call = department.Call(
        principal=p,
        grant_id=grant_id.strip(),
        operation=rule.grant.format(**params),
        tenant=tenant,
        door=door,
        method=method,
        community_id=community_id.strip(),
        fields=fields,
        filters=filters,
        task=title if rule.grant == ASSISTANCE_OPERATION else None,
        target=params.get("item_id") or params.get("collection") or "",
        request_id=request_id,
    )
    try:
        return department.check(call, store, audit)
    except department.Refused as exc:
        raise ApiError(403, "outside_grant", f"{exc.message} (超出授权范围)", field=exc.missing) from None


def table() -> str:
    """POLICY as a Markdown table: route families x roles (yes / own tenant / loopback), and how a community
    worker is held to its community on each family (社区范围)."""
    families: dict[str, Rule] = {}
    scopes: dict[str, list[str]] = {}
    for rule in POLICY.values():
        families.setdefault(rule.family, rule)
        shown = COMMUNITY_SCOPES.get(rule.community, "–")
        if shown not in scopes.setdefault(rule.family, []):
            scopes[rule.family].append(shown)
    roles = [r for r in ROLES if r != "service"]
    header = [("public (anonymous)" if r == "public" else r) for r in roles]
    lines = [
        "| route family | " + " | ".join(header) + " | community worker: 社区范围 |",
        "|---" * (len(roles) + 2) + "|",
    ]
    for family, rule in families.items():
        cells = []
        for role in roles:
            if role not in rule.roles and role == "district_department" and rule.grant:
                cells.append("grant")
            elif role not in rule.roles:
                cells.append("–")
            elif role in rule.local_only:
                cells.append("loopback")
            elif rule.tenant_scoped and role != "public":
                cells.append("scoped")
            else:
                cells.append("yes")
        lines.append(f"| {family} | " + " | ".join(cells) + f" | {'; '.join(scopes[family])} |")
    lines += [
        "",
        "scoped: only on the tenants in the token's scope (* = every tenant); loopback: only on a direct",
        "connection from this host; public: the anonymous caller (on any tenant) or a public-role token (its",
        "tenants); grant: only under an approved grant covering the operation, tenant, community and fields",
        "(every call, allowed or refused, in the audit log); –: refused (401 anonymous, 403 with a token).",
        "A route not in the table is refused to all.",
        "",
        "社区范围: a community worker's token or account carries its one community. own community only: a list or",
        "count is limited to it, and naming another community is 403 community_out_of_scope; own community's: a",
        "record of another community is 404 not_found, as a missing one (an id never confirms it exists); in own",
        "community: a new record placed in another community is 403; anywhere: an issue is filed where it lies",
        "(首问负责); whole tenant: not one community's data. The services check the same again.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
