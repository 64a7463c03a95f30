"""Who may call what: ONE table, keyed by Flask endpoint, enforced in one before_request hook.

Default deny: a route missing from POLICY is refused for everyone (and tests/unit/test_gateway_policy.py
fails, so a new route cannot forget its line). For each route the table says which roles may call it
and whether it is tenant-scoped: then the principal's tenants must include the path's {tenant}
(`*` = every tenant). The anonymous caller is the role `public`; on a tenant-scoped route it may act
on any tenant (public reporting) unless the route does not admit `public` at all.

Refusals: 401 when the caller is anonymous and the route needs a token, 403 naming the role (or the
tenant scope) and what the route needs otherwise. District departments get no default access to
anything tenant-scoped: their access comes only from approved, scoped grants (the next issue).
Community workers are scoped to tenants here; scoping them to their own community comes with people's
logins.

`python -m gateway.policy` prints the table (role x route family) as Markdown.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from flask import Flask, g, request
from prometheus_client import Counter

from gateway.errors import ApiError
from gateway.identity import Identity, challenge, identify
from gateway.tokens import TokenStore
from services.common.errors import UnknownTenant
from services.common.principal import ROLES, Principal
from services.common.tenants import get_tenant

log = logging.getLogger("gateway.policy")

ANYONE = frozenset(ROLES)
STAFF = frozenset({"community_worker", "subdistrict_admin"})
REPORTERS = frozenset({"public", "resident", "community_worker", "subdistrict_admin"})
ACCOUNT_ADMINS = frozenset({"subdistrict_admin", "ops"})
APPROVERS = frozenset({"district_approver"})
DEPARTMENTS = frozenset({"district_department"})
REQUEST_READERS = frozenset({"district_approver", "district_department", "subdistrict_admin"})
GRANT_READERS = REQUEST_READERS | STAFF
REFUSALS = Counter(
    "hongling_gateway_refusals_total", "Requests the gateway's policy refused.", ["route", "role", "status"]
)


@dataclass(frozen=True)
class Rule:
    family: str  # what the route is, for messages and the printed table
    roles: frozenset[str]
    tenant_scoped: bool
    # Roles honoured only on a direct loopback connection (no proxy header), e.g. an unauthenticated scraper.
    local_only: frozenset[str] = frozenset()


POLICY: dict[str, Rule] = {
    # Probes and the tenant list: anyone, no tenant.
    "healthz": Rule("health", ANYONE, tenant_scoped=False),
    "readyz": Rule("health", ANYONE, tenant_scoped=False),
    # Request counts and latencies by route: ops with a token anywhere; unauthenticated only from this host.
    "metrics": Rule("metrics", frozenset({"ops", "public"}), tenant_scoped=False, local_only=frozenset({"public"})),
    "tenants": Rule("tenants list", ANYONE, tenant_scoped=False),
    # Issues: anyone may report one and read it back by its (unguessable) id; listing is for staff.
    "issues.create_issue": Rule("issues: report", REPORTERS, tenant_scoped=True),
    "issues.get_issue": Rule("issues: read one", REPORTERS, tenant_scoped=True),
    "issues.list_issues": Rule("issues: list", STAFF, tenant_scoped=True),
    # Organisation structure: holds people's personal data; staff of the tenant only.
    "org.list_items": Rule("org: read", STAFF, tenant_scoped=True),
    "org.get_item": Rule("org: read", STAFF, tenant_scoped=True),
    "org.create_item": Rule("org: write", STAFF, tenant_scoped=True),
    "org.update_item": Rule("org: write", STAFF, tenant_scoped=True),
    "org.delete_item": Rule("org: write", STAFF, tenant_scoped=True),
    "org.resolve_location": Rule("org: resolve / candidates", STAFF, tenant_scoped=True),
    "org.find_candidates": Rule("org: resolve / candidates", STAFF, tenant_scoped=True),
    "org.import_sheet": Rule("org: import", STAFF, tenant_scoped=True),
    "org.export_sheet": Rule("org: export", STAFF, tenant_scoped=True),
    # District department requests (审核把关): a department files; a district approver decides; which
    # records each caller sees (own / tenant scope) is gateway/governance/shapes.py.
    "governance.file_request": Rule("department requests: file", DEPARTMENTS, tenant_scoped=False),
    "governance.list_requests": Rule("department requests: read", REQUEST_READERS, tenant_scoped=False),
    "governance.get_request": Rule("department requests: read", REQUEST_READERS, tenant_scoped=False),
    "governance.approve_request": Rule("department requests: decide", APPROVERS, tenant_scoped=False),
    "governance.reject_request": Rule("department requests: decide", APPROVERS, tenant_scoped=False),
    # Grants: the community and subdistrict see every grant on them and every use of it.
    "governance.get_grant": Rule("grants: read one", GRANT_READERS, tenant_scoped=False),
    "governance.list_tenant_grants": Rule("grants: tenant list", STAFF, tenant_scoped=True),
    "governance.revoke_grant": Rule("grants: revoke", APPROVERS, tenant_scoped=False),
    # The API's own description: the OpenAPI document, the docs page and its static files; anyone.
    "docs.openapi_json": Rule("api docs", ANYONE, tenant_scoped=False),
    "docs.docs_page": Rule("api docs", ANYONE, tenant_scoped=False),
    "docs.docs_asset": Rule("api docs", ANYONE, tenant_scoped=False),
    # People's sessions: anyone may try to log in (rate-limited) and ask who they are; log-out ends sessions.
    "auth.login": Rule("auth: log in", ANYONE, tenant_scoped=False),
    "auth.me": Rule("auth: who am I", ANYONE, tenant_scoped=False),
    "auth.logout": Rule("auth: log out", ANYONE - {"public"}, tenant_scoped=False),
    # People's accounts: ops any; subdistrict admins their own tenants' tenant-level accounts (checked in
    # gateway/routes_auth.py, as the tenant is in the body or query, not the path).
    "users.list_users": Rule("users: manage", ACCOUNT_ADMINS, tenant_scoped=False),
    "users.create_user": Rule("users: manage", ACCOUNT_ADMINS, tenant_scoped=False),
    "users.change_role": Rule("users: manage", ACCOUNT_ADMINS, tenant_scoped=False),
}


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
    rule: Rule | None, endpoint: str, identity: Identity, tenant: str | None, *, local: bool
) -> tuple[Principal, None] | tuple[None, ApiError]:
    """The principal to act as, or the refusal. Pure: no Flask, no I/O (tenant slugs are looked up)."""
    p = identity.principal
    if rule is None:
        log.error("route %s is not in the policy table: refused (default deny)", endpoint)
        return None, ApiError(403, "forbidden", "this endpoint is not open to anyone (default deny) (拒绝访问)")
    allowed = p.role in rule.roles and (p.role not in rule.local_only or local)
    if not allowed:
        if identity.anonymous:
            return None, ApiError(
                401,
                "unauthenticated",
                f"{rule.family} needs an API token: send 'Authorization: Bearer <token>' (需要令牌认证)",
                headers=challenge(),
            )
        where = " from this host" if p.role in rule.local_only else ""
        return None, ApiError(
            403,
            "forbidden",
            f"role {p.role!r} may not use {rule.family}{where}; it needs one of: {_roles(rule.roles)} "
            "(当前角色无权访问)",
        )
    if not rule.tenant_scoped:
        return p, None
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
        principal, refusal = decide(rule, endpoint, identity, tenant, local=local)
        if refusal is not None:
            route = request.url_rule.rule if request.url_rule else endpoint
            REFUSALS.labels(route, identity.principal.role, str(refusal.status)).inc()
            raise refusal
        g.principal = principal


def table() -> str:
    """POLICY as a Markdown table: route families x roles (yes / own tenant / loopback)."""
    families: dict[str, Rule] = {}
    for rule in POLICY.values():
        families.setdefault(rule.family, rule)
    roles = [r for r in ROLES if r != "service"]
    header = [("public (anonymous)" if r == "public" else r) for r in roles]
    lines = ["| route family | " + " | ".join(header) + " |", "|---" * (len(roles) + 1) + "|"]
    for family, rule in families.items():
        cells = []
        for role in roles:
            if role not in rule.roles:
                cells.append("–")
            elif role in rule.local_only:
                cells.append("loopback")
            elif rule.tenant_scoped and role != "public":
                cells.append("scoped")
            else:
                cells.append("yes")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "scoped: only on the tenants in the token's scope (* = every tenant); loopback: only on a direct",
        "connection from this host; public: the anonymous caller (on any tenant) or a public-role token (its",
        "tenants); –: refused (401 anonymous, 403 with a token). A route not in the table is refused to all.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
