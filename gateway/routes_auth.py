"""People's log-in and their accounts over HTTP.

    POST /api/v1/auth/login     {username, password} -> {access_token, token_type, expires_in, role, tenants,
                                community_id}
    POST /api/v1/auth/logout    ends every session of the caller's account (bumps its token_version) -> 204
    GET  /api/v1/auth/me        who the caller is (session, API token or the anonymous public; a community
                                worker's community_id)
    GET  /api/v1/users?tenant=&page_size=&page_token=       accounts the caller may manage
    POST /api/v1/users          {username, display_name, role, tenants, community_id?, responder?, password} -> 201
    PUT  /api/v1/users/<username>/role   {role, tenants, community_id?, responder?}: ends the account's sessions
                                (the route's parameter is named item_id, as the other routes' ids)

Account management is for ops (any account) and subdistrict admins (accounts with a tenant-level role
within their own tenants, never a district role or ops; see gateway/users.py may_manage); nobody changes
their own role. A community worker's account names the community it works for (`community_id`, required),
which must exist in its tenant: the gateway asks the org service (400 `invalid_argument` on community_id
when it does not, 503 when org does not answer). A community worker's account without a community (made
before it was required) may not log in (403 `community_required`) until an administrator sets it.
Creating an account and changing a role are written to the audit log before they are made (outcome
`allowed`; a refused attempt as `refused`), so they fail closed when the log is unreachable.

A wrong password, an unknown user name and a disabled account get the same 401 in about the same time
(an unknown name is verified against a dummy hash); attempts are rate-limited per client IP and user name
(gateway/ratelimit.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
import pymongo.errors
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.app import json_body
from gateway.calls import clients
from gateway.community import REQUIRED, Communities, OrgCommunities, required_message
from gateway.errors import ApiError
from gateway.identity import Identity, challenge
from gateway.ratelimit import RateLimits
from gateway.sessions import SessionVerifier, issue
from gateway.users import (
    MAX_PASSWORD,
    Account,
    AccountExists,
    AccountNotFound,
    AccountStore,
    ChangedConcurrently,
    InvalidAccount,
    Scope,
    check_community_exists,
    check_display_name,
    check_password,
    check_scope,
    dummy_hash,
    hash_password,
    may_manage,
    needs_rehash,
    normalise_username,
    verify_dummy,
    verify_password,
)
from services.common.audit import AuditLog, open_log
from services.common.principal import COMMUNITY_ROLE, Principal
from services.common.settings import Settings
from services.common.tenants import tenant_slugs

log = logging.getLogger("gateway.auth")
auth_bp = Blueprint("auth", __name__)
users_bp = Blueprint("users", __name__)
BAD_CREDENTIALS = "wrong user name or password (用户名或密码错误)"
DEFAULT_PAGE = 100
MAX_PAGE = 500
LOGINS = Counter("hongling_gateway_logins_total", "Log-in attempts at the gateway, by outcome.", ["outcome"])


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=4 * MAX_PASSWORD)


class RoleIn(BaseModel):
    """The account's new scope: role, tenants (slugs, or ["*"]), for a community worker its community, for a
    member (成员单位/个人) the helper it acts as, `responder` = member_unit:ID, person:ID or team:ID."""

    model_config = ConfigDict(extra="forbid")
    role: str
    tenants: list[str] = Field(default_factory=list, max_length=20)
    community_id: str | None = None
    responder: str | None = None


class CreateUserIn(RoleIn):
    """A new account; the initial password is at least 10 characters and not an easy guess."""

    username: str
    display_name: str
    password: str = Field(max_length=4 * MAX_PASSWORD)


# ---------------------------------------------------------------- wiring


def init_app(app: Flask, settings: Settings) -> None:
    """The account store and session verifier (connecting on first use), and the two blueprints."""
    accounts = AccountStore(settings.mongo_uri)
    app.extensions["hongling.accounts"] = accounts
    app.extensions["hongling.sessions"] = SessionVerifier(
        settings.session_secret, accounts.get, accepted=settings.session_secrets()[1:]
    )
    dummy_hash()  # now, so the first log-in with an unknown name is not slower than the others
    app.register_blueprint(auth_bp)
    app.register_blueprint(users_bp)


def _accounts() -> AccountStore:
    store: AccountStore = current_app.extensions["hongling.accounts"]
    return store


def _sessions() -> SessionVerifier:
    verifier: SessionVerifier = current_app.extensions["hongling.sessions"]
    return verifier


def _communities() -> Communities:
    """Whether a community exists (app.extensions "hongling.communities" if set, else the org service)."""
    found: Communities | None = current_app.extensions.get("hongling.communities")
    return found if found is not None else OrgCommunities(clients().org)


def _check_community(scope: Scope) -> None:
    """A community worker's community must exist in its tenant: 400 naming community_id, 503 if org is down."""
    try:
        check_community_exists(scope, _communities().exists)
    except InvalidAccount as exc:
        raise _invalid(exc) from None
    except grpc.RpcError:
        raise ApiError(
            503,
            "service_unavailable",
            "the organisation service is not answering, so the community cannot be checked (服务暂不可用); retry "
            "shortly",
            headers={"Retry-After": "2"},
        ) from None


def _settings() -> Settings:
    settings: Settings = current_app.extensions["hongling.settings"]
    return settings


def _audit_log() -> AuditLog:
    found: AuditLog | None = current_app.extensions.get("hongling.audit")
    if found is None:
        found = current_app.extensions["hongling.audit"] = open_log(_settings())
    return found


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        kinds = {"missing": "is required (必填)", "extra_forbidden": "is not a known field (未知字段)"}
        raise ApiError(400, "invalid_argument", f"{field} {kinds.get(err['type'], err['msg'])}", field=field) from None


def _invalid(exc: InvalidAccount) -> ApiError:
    return ApiError(400, "invalid_argument", exc.message, field=exc.field)


def _unavailable() -> ApiError:
    return ApiError(
        503,
        "service_unavailable",
        "the account database is not answering right now (服务暂不可用); retry shortly",
        headers={"Retry-After": "2"},
    )


# ---------------------------------------------------------------- log-in, log-out, who am I


@auth_bp.post("/api/v1/auth/login")
def login() -> Response:
    """登录 Log in with a user name and password: a session token for `Authorization: Bearer`

    The token is valid for 30 minutes (`expires_in` seconds) and ends at log-out, a role change, a new
    password or when the account is disabled. A wrong password and an unknown user name get the same 401.
    Attempts are limited per client address and user name (429 with Retry-After)."""
    data: LoginIn = _parse(LoginIn, json_body())
    limits: RateLimits = current_app.extensions["hongling.ratelimits"]
    try:
        username = normalise_username(data.username)
    except InvalidAccount:
        username = ""
    limits.check_login(username or data.username.strip().lower()[:64])
    try:
        account = _accounts().get(username) if username else None
    except pymongo.errors.PyMongoError:
        raise _unavailable() from None
    if account is None:
        verify_dummy(data.password)
        ok = False
    else:
        ok = verify_password(account.password_hash, data.password) and not account.disabled
    if not ok or account is None:
        LOGINS.labels("refused").inc()
        log.info("log-in refused")  # the typed name is not logged: it may be a mistyped password
        raise ApiError(401, "invalid_credentials", BAD_CREDENTIALS, headers=challenge())
    if account.role == COMMUNITY_ROLE and account.community_id is None:  # the right password, an unscoped account
        LOGINS.labels(REQUIRED).inc()
        log.info("log-in refused for %s: a community worker without a community", account.username)
        raise ApiError(403, REQUIRED, required_message("session", account.username))
    if needs_rehash(account.password_hash):
        try:
            _accounts().rehash(account.username, account.password_hash, hash_password(data.password))
        except pymongo.errors.PyMongoError:
            log.warning("could not store a rehashed password for %s; kept the old hash", account.username)
    settings = _settings()
    token, claims = issue(account, settings.session_secret, settings.session_ttl_seconds)
    LOGINS.labels("ok").inc()
    log.info("session opened for %s (%s)", account.username, account.role)
    resp = jsonify(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims.exp - claims.iat,
            "role": account.role,
            "tenants": list(account.tenants),
            "community_id": account.community_id,  # a community worker's community (社区); null for others
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


@auth_bp.post("/api/v1/auth/logout")
def logout() -> tuple[str, int]:
    """退出登录 Log out: end every session of the caller's account

    Bumps the account's token version, so every session token it holds is refused from now on (on other
    gateway processes within a few seconds). API tokens are revoked with `python -m gateway.tokens revoke`."""
    identity: Identity = g.identity
    if identity.account is None:
        raise ApiError(
            400,
            "not_a_session",
            "log-out ends a person's sessions; an API token is revoked with `python -m gateway.tokens revoke` "
            "(API令牌请由管理员撤销)",
        )
    try:
        _accounts().end_sessions(identity.account.username)
    except AccountNotFound:
        pass  # deleted meanwhile: nothing left to end
    except pymongo.errors.PyMongoError:
        raise _unavailable() from None
    _sessions().forget(identity.account.username)
    log.info("sessions ended for %s (log-out)", identity.account.username)
    return "", 204


@auth_bp.get("/api/v1/auth/me")
def me() -> Response:
    """当前身份 Who the caller is: a person's session, an API token or the anonymous public

    `community_id`: the community a community worker works for (its lists and records are that community's);
    a session always shows it (null for other roles)."""
    identity: Identity = g.identity
    p = identity.principal
    body: dict[str, Any] = {"kind": identity.kind, "sub": p.sub, "role": p.role, "tenants": list(p.tenants)}
    if p.responder is not None:
        body["responder"] = {"kind": p.responder[0], "id": p.responder[1]}
    if p.community is not None:  # a community worker's: the one community it works for (社区)
        body["community_id"] = p.community
    if identity.account is not None:
        body |= {"display_name": identity.account.display_name, "community_id": identity.account.community_id}
    if identity.token_id is not None:
        body["token_id"] = identity.token_id
    return jsonify(body)


# ---------------------------------------------------------------- accounts


def _actor() -> Principal:
    principal: Principal = g.principal
    return principal


def _refuse(actor: Principal, scope: Scope, what: str) -> ApiError:
    if actor.role == "subdistrict_admin" and scope.role in ("district_approver", "district_department", "ops"):
        return ApiError(
            403,
            "forbidden",
            f"role {actor.role!r} may not {what} with the district role {scope.role!r}; ask ops "
            "(街道管理员不能授予区级角色)",
            field="role",
        )
    mine = ", ".join(actor.tenants) or "no tenant"
    theirs = ", ".join(scope.tenants) or "no tenant"
    return ApiError(
        403,
        "tenant_out_of_scope",
        f"{actor.sub!r} ({actor.role}) may act on {mine}: it may not {what} on {theirs} (无权管理该街道/镇的账号)",
        field="tenants",
    )


def _audit(action: str, outcome: str, target: str, tenant: str, detail: Mapping[str, Any]) -> None:
    actor = _actor()
    try:
        _audit_log().append(
            actor=actor.sub,
            role=actor.role,
            action=action,
            outcome=outcome,
            tenant=tenant,
            target=target,
            request_id=g.get("request_id", ""),
            detail=detail,
        )
    except pymongo.errors.PyMongoError:
        log.error("audit log unreachable: %s on %s by %s not recorded", action, target, actor.sub)
        raise ApiError(
            503,
            "service_unavailable",
            "the audit log is not answering, so account changes are refused for now (审计日志暂不可用); retry shortly",
            headers={"Retry-After": "2"},
        ) from None


def _tenant_of(*scopes: Scope) -> str:
    """The audit entry's tenant: the one tenant all the scopes share, else '' (district level)."""
    tenants = {t for s in scopes for t in s.tenants}
    return next(iter(tenants)) if len(tenants) == 1 and "*" not in tenants else ""


@users_bp.get("/api/v1/users")
def list_users() -> Response:
    """账号列表 Accounts the caller may manage, by user name

    `tenant`: only accounts that may act on it (its slug or every tenant). Keyset pages: `page_size`
    (1–500, default 100) accounts are read per page, and those the caller may manage are returned, so a
    page can hold fewer; `next_page_token` is null on the last page."""
    actor = _actor()
    tenant = request.args.get("tenant") or None
    if tenant is not None:
        if tenant not in tenant_slugs():
            raise ApiError(404, "unknown_tenant", f"unknown tenant {tenant!r} (街道/镇不存在)", field="tenant")
        if actor.role != "ops" and not actor.may_act_on(tenant):  # ops manage every tenant's accounts
            raise ApiError(
                403, "tenant_out_of_scope", f"no scope on tenant {tenant!r} (无权访问该街道/镇数据)", field="tenant"
            )
    try:
        size = int(request.args.get("page_size", str(DEFAULT_PAGE)))
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE:
        raise ApiError(400, "invalid_argument", f"page_size must be 1-{MAX_PAGE}", field="page_size")
    after = request.args.get("page_token", "")
    try:
        page = _accounts().page(after=after, limit=size, tenant=tenant)
    except pymongo.errors.PyMongoError:
        raise _unavailable() from None
    shown = [a.as_json() for a in page if may_manage(actor, a.scope)]
    return jsonify({"users": shown, "next_page_token": page[-1].username if len(page) == size else None})


@users_bp.post("/api/v1/users")
def create_user() -> tuple[Response, int]:
    """新建账号 Create a person's account with an initial password

    The password must be at least 10 characters and not an easy guess (common words, runs like 12345678);
    it is stored only as an argon2id hash. Subdistrict admins create tenant-level accounts of their own
    tenants only. A community_worker needs `community_id`, a community of its one tenant."""
    data: CreateUserIn = _parse(CreateUserIn, json_body())
    actor = _actor()
    try:
        username = normalise_username(data.username)
        display_name = check_display_name(data.display_name)
        scope = check_scope(data.role, data.tenants, data.community_id, data.responder)
    except InvalidAccount as exc:
        raise _invalid(exc) from None
    if not may_manage(actor, scope):
        _audit("account.create", "refused", username, _tenant_of(scope), {"to": scope.as_dict()})
        raise _refuse(actor, scope, "create an account")
    try:
        check_password(data.password, username)
    except InvalidAccount as exc:
        raise _invalid(exc) from None
    _check_community(scope)
    try:
        if _accounts().get(username) is not None:
            raise AccountExists(username)
        password_hash = hash_password(data.password)
        _audit("account.create", "allowed", username, _tenant_of(scope), {"to": scope.as_dict()})
        account = _accounts().create(username, display_name, scope, password_hash)
    except AccountExists:
        raise ApiError(
            409, "already_exists", f"an account named {username!r} exists already (账号已存在)", field="username"
        ) from None
    except pymongo.errors.PyMongoError:
        raise _unavailable() from None
    log.info("account %s created by %s (%s)", username, actor.sub, scope.role)
    return jsonify(account.as_json()), 201


@users_bp.put("/api/v1/users/<item_id>/role")
def change_role(item_id: str) -> Response:
    """修改账号角色 Change an account's role, tenants and community

    `item_id` is the account's user name (用户名). Ends the account's sessions (its token version is
    bumped) and is written to the audit log (`role.change`, detail from/to). A community_worker needs
    `community_id`, a community of its one tenant (this is also how its community is set or moved).
    Subdistrict admins may change tenant-level accounts of their own tenants only, never to a district role
    or ops; nobody changes their own role."""
    username = item_id
    data: RoleIn = _parse(RoleIn, json_body())
    actor = _actor()
    try:
        name = normalise_username(username)
    except InvalidAccount:
        name = ""
    try:
        scope = check_scope(data.role, data.tenants, data.community_id, data.responder)
        account: Account | None = _accounts().get(name) if name else None
    except InvalidAccount as exc:
        raise _invalid(exc) from None
    except pymongo.errors.PyMongoError:
        raise _unavailable() from None
    if account is None:
        raise ApiError(404, "not_found", f"no account named {username!r} (账号不存在)", field="username")
    if account.username == actor.sub:
        raise ApiError(
            403, "forbidden", "nobody changes their own role; ask another administrator (不能修改自己的角色)"
        )
    detail = {"from": account.scope.as_dict(), "to": scope.as_dict()}
    tenant = _tenant_of(account.scope, scope)
    for current, what in ((account.scope, "change an account"), (scope, "grant a role")):
        if not may_manage(actor, current):
            _audit("role.change", "refused", account.username, tenant, detail)
            raise _refuse(actor, current, what)
    if scope == account.scope:
        return jsonify(account.as_json())  # nothing to change: no new version, no audit entry
    _check_community(scope)
    _audit("role.change", "allowed", account.username, tenant, detail)
    try:
        changed = _accounts().change_scope(account, scope)
    except ChangedConcurrently:
        _audit("role.change", "refused", account.username, tenant, {**detail, "reason": "changed concurrently"})
        raise ApiError(
            409, "conflict", "the account changed meanwhile; read it again and retry (账号已被修改，请重试)"
        ) from None
    except pymongo.errors.PyMongoError:
        raise _unavailable() from None
    finally:
        _sessions().forget(account.username)
    log.info("role of %s changed by %s: %s -> %s", account.username, actor.sub, account.role, scope.role)
    return jsonify(changed.as_json())
