"""District department requests (审核把关), decisions and grants over HTTP.

A district department has no default access to community-level data and may not push tasks onto
communities. It files a request; a district approver (区委区政府) approves it, possibly narrowing it,
or rejects it with a reason; an approval becomes a scoped, expiring grant. Assessment tasks (考核任务)
are refused at filing. The rules are gateway/governance/domain.py's; storage is
gateway/governance/store.py (district database hl_governance); every decision — filed, refused,
approved, rejected, revoked — is appended to the hash-chained audit log (services/common/audit.py).

    POST /api/v1/department-requests                        file (district_department) -> 201
    GET  /api/v1/department-requests?status=&tenant=&page_size=&page_token=
    GET  /api/v1/department-requests/{id}
    POST /api/v1/department-requests/{id}/approve           optional narrowing -> 200, the grant
    POST /api/v1/department-requests/{id}/reject            {reason} -> 200, the request
    GET  /api/v1/grants/{id}?audit_limit=&audit_before=     the grant, its use and its audit trail
    POST /api/v1/grants/{id}/revoke                         {reason} -> 200, the grant
    GET  /api/v1/tenants/{tenant}/grants?page_size=&page_token=&audit_limit=

Who may call which route is gateway/policy.py; which records a caller sees is
gateway/governance/shapes.py: approvers every record in their tenant scope, a department its own,
subdistrict admins (and, for grants, community workers) those on their tenant(s). A record the caller
may not see is answered 404, as one that does not exist. A token's tenant scope always applies,
also to a department filing a request (`*` = every tenant).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import grpc
from flask import Blueprint, Response, g, jsonify, request
from hongling.org.v1 import org_pb2
from pydantic import BaseModel

from gateway.app import json_body
from gateway.calls import clients
from gateway.community import list_filter
from gateway.errors import ApiError, from_rpc_error
from gateway.governance import domain, shapes
from gateway.governance.shapes import ApproveIn, BodyError, FileRequestIn, ReasonIn
from gateway.governance.store import (
    STATUSES,
    GovernanceStore,
    current_audit,
    current_store,
    grant_id_for,
    is_grant_id,
    is_request_id,
    new_request_id,
    record_grant_audit,
    request_document,
    request_from_document,
)
from gateway.routes_audit import SEQ_MAX
from gateway.routes_issues import ISSUE_FIELDS
from gateway.routes_org import readable_fields
from services.common import audit_readmodel, context
from services.common.audit import Entry
from services.common.errors import InvalidArgument, PermissionDenied, UnknownTenant
from services.common.principal import Principal
from services.common.tenants import get_tenant, tenant_slugs

bp = Blueprint("governance", __name__)
REQUESTS = "/api/v1/department-requests"
GRANTS = "/api/v1/grants"
# The gateway's own identity when it checks a request's community and list item with the org service:
# the department itself has no access to community data, and must not get any to file a request.
GATEWAY_SUB = "gateway"
CJK = re.compile(r"[\u4e00-\u9fff]")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---------------------------------------------------------------- helpers


def _store() -> GovernanceStore:
    return current_store()


def _principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:  # the policy hook sets it before any view runs; never assume it
        raise ApiError(403, "forbidden", "no authenticated caller (拒绝访问)")
    return principal


def _now() -> datetime:
    return datetime.now(UTC)


def _zh(message: str, hint: str) -> str:
    """A message from the domain rules, with a Chinese hint when it has none."""
    return message if CJK.search(message) else f"{message} ({hint})"


def _bad(field: str | None, message: str, hint: str = "申请内容有误") -> ApiError:
    return ApiError(400, "invalid_argument", _zh(message, hint), field=field)


def _parse(model: type[M], data: Mapping[str, Any]) -> M:
    try:
        return shapes.parse(model, data)
    except BodyError as exc:
        raise _bad(exc.field, exc.message, "请求内容不符合格式") from None


def _optional_body() -> dict[str, Any]:
    """The JSON object body, or {} when the body is empty."""
    return json_body() if request.get_data(cache=True).strip() else {}


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, f"{name} must be a whole number", "应为整数") from None
    if not lo <= value <= hi:
        raise _bad(name, f"{name} must be {lo}..{hi}", "超出范围")
    return value


def _token_arg(valid: Callable[[str], bool]) -> str | None:
    raw = request.args.get("page_token", "").strip()
    if raw and not valid(raw):
        raise _bad("page_token", "page_token is not one this API gave out", "分页标记无效")
    return raw or None


def _audit(action: str, outcome: str, *, tenant: str, target: str, detail: Mapping[str, Any]) -> Entry:
    p = _principal()
    return current_audit().append(
        actor=p.sub,
        role=p.role,
        action=action,
        outcome=outcome,
        tenant=tenant,
        target=target,
        request_id=g.get("request_id") or "",
        detail=detail,
    )


def _not_found(what: str, ident: str) -> ApiError:
    zh = "申请" if what == "request" else "授权"
    return ApiError(404, "not_found", f"no {what} {ident!r} that you may see (未找到该{zh})", field="id")


def _visible_request(request_id: str) -> dict[str, Any]:
    doc = _store().request(request_id)
    if doc is None or not shapes.may_see_request(_principal(), doc):
        raise _not_found("request", request_id)
    return doc


def _visible_grant(grant_id: str) -> dict[str, Any]:
    doc = _store().grant(grant_id)
    if doc is None or not shapes.may_see_grant(_principal(), doc):
        raise _not_found("grant", grant_id)
    return doc


def _already_decided(doc: Mapping[str, Any]) -> ApiError:
    decision = doc.get("decision") or {}
    at = shapes.local_time(decision["at"]) if decision.get("at") else "?"
    return ApiError(
        409,
        "already_decided",
        f"request {doc['_id']} was already {doc['status']} by {decision.get('by', '?')} at {at} "
        "(该申请已审核，不能重复处理)",
    )


def _request_with_grant(doc: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    grant = _store().grant(doc["grant_id"]) if doc.get("grant_id") else None
    return shapes.request_json(doc, grant, now=now)


# ---------------------------------------------------------------- filing


def _lookup(call: Callable[[], T], field: str, message: str) -> T:
    try:
        return call()
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise ApiError(400, "invalid_argument", message, field=field) from None
        raise from_rpc_error(exc) from None


def _public_affairs_mode(req: domain.Request) -> str:
    """Check with the org service that the community exists in the tenant and the list item is one of
    its public-affairs items (承办 or 协办); the item's mode."""
    service = Principal(sub=GATEWAY_SUB, role="service", tenants=(req.tenant,))
    org = clients().org
    with context.bound(tenant=req.tenant, principal=service):
        _lookup(
            lambda: org.GetCommunity(org_pb2.GetRequest(id=req.community_id)),
            "community_id",
            f"community {req.community_id!r} does not exist in {req.tenant} (该街道/镇没有这个社区)",
        )
        item = _lookup(
            lambda: org.GetPublicAffairsItem(org_pb2.GetRequest(id=req.public_affairs_item_id)),
            "public_affairs_item_id",
            f"public-affairs item {req.public_affairs_item_id!r} does not exist in {req.tenant} "
            "(公共事务清单中没有该事项)",
        )
    if item.community_id != req.community_id or item.mode not in shapes.PUBLIC_AFFAIRS_MODES:
        raise ApiError(
            400,
            "invalid_argument",
            f"public-affairs item {req.public_affairs_item_id!r} is not on community {req.community_id!r}'s "
            "承办 or 协办 list (该事项不在该社区的公共事务清单上)",
            field="public_affairs_item_id",
        )
    return str(item.mode)


@bp.post(REQUESTS)
def file_request() -> tuple[Response, int]:
    """提交部门申请 File a district department's request (data access or assistance)

    The department is the caller's account. The body names the purpose, the tenant and community, what
    to read (`operations`, `fields`) or the tasks to hand over (`tasks`), the community's public-affairs
    list item relied on (承办/协办), the funding and working conditions, and the period. Assessment tasks
    (考核任务) are refused with 403 `assessment_task_refused`, and the refusal is written to the audit log."""
    p = _principal()
    data = _parse(FileRequestIn, json_body()).model_dump()
    today = _now().astimezone(domain.SHANGHAI).date()
    try:
        req = domain.validate_request(data, p.sub, today)
    except PermissionDenied as exc:
        raw_tenant = data.get("tenant") or ""
        found = domain.assessment_wording(
            data.get("purpose") or "", *(data.get("tasks") or []), data.get("title") or ""
        )
        _audit(
            "request.refuse",
            "refused",
            tenant=raw_tenant if raw_tenant in tenant_slugs() else "",
            target="",
            detail={
                "reason": exc.reason,
                "kind": str(data.get("kind") or ""),
                # the phrase and why it is an assessment: what an approver reads in the audit log
                "marker": found.phrase if found else "assessment",
                "why": found.why if found else "the request says it is an assessment",
                # the community the refused request named: the burden ledger's line (services/publication/reports)
                "community_id": str(data.get("community_id") or "")[:64],
            },
        )
        raise ApiError(403, exc.reason, f"{exc.message} (区直部门不得向社区摊派考核任务)", field=exc.field) from None
    except InvalidArgument as exc:
        raise _bad(shapes.domain_field(exc.field), exc.message) from None
    try:
        get_tenant(req.tenant)
    except UnknownTenant as exc:
        raise _bad("tenant", exc.message) from None
    readable = readable_fields(req.operations) | (ISSUE_FIELDS if "intake.read:issues" in req.operations else set())
    unknown = sorted(set(req.fields) - readable)
    if unknown:
        raise _bad(
            "fields",
            f"no such field(s) in what the operations read: {', '.join(unknown)}; "
            f"fields are: {', '.join(sorted(readable))}",
        )
    if not p.may_act_on(req.tenant):
        _audit(
            "request.refuse",
            "refused",
            tenant=req.tenant,
            target="",
            detail={"reason": "tenant_out_of_scope", "kind": req.kind, "community_id": req.community_id},
        )
        raise ApiError(
            403,
            "tenant_out_of_scope",
            f"{p.sub!r} ({p.role}) may act on {', '.join(p.tenants) or 'no tenant'}, not on {req.tenant!r} "
            "(无权向该街道/镇提出申请)",
            field="tenant",
        )
    mode = _public_affairs_mode(req)
    now = _now()
    request_id = new_request_id(now)
    doc = request_document(
        req, request_id, title=(data.get("title") or "").strip(), public_affairs_mode=mode, filed_by=p.sub, filed_at=now
    )
    _store().add_request(doc)
    _audit("request.file", "done", tenant=req.tenant, target=request_id, detail=shapes.request_detail(doc))
    resp = jsonify(shapes.request_json(doc, now=now))
    resp.headers["Location"] = f"{REQUESTS}/{request_id}"
    return resp, 201


# ---------------------------------------------------------------- reading requests


@bp.get(REQUESTS)
def list_requests() -> Response:
    """部门申请列表 Department requests, newest first

    District approvers see every request in their tenant scope, a department its own, a subdistrict admin
    those on its tenant(s). Filters: `status` (filed, approved, rejected), `tenant`."""
    p = _principal()
    status = request.args.get("status", "").strip() or None
    if status is not None and status not in STATUSES:
        raise _bad("status", f"status must be one of: {', '.join(STATUSES)}", "状态无效")
    tenants, department = shapes.request_filter(p)
    wanted = request.args.get("tenant", "").strip()
    if wanted:
        try:
            get_tenant(wanted)
        except UnknownTenant as exc:
            raise _bad("tenant", exc.message) from None
        if not p.may_act_on(wanted):
            raise ApiError(
                403, "tenant_out_of_scope", f"{p.sub!r} ({p.role}) has no scope on {wanted!r} (无权访问该街道/镇数据)"
            )
        tenants = (wanted,)
    page = _store().requests_page(
        tenants=tenants,
        department=department,
        status=status,
        after=_token_arg(is_request_id),
        limit=_int_arg("page_size", shapes.PAGE_DEFAULT, 1, shapes.PAGE_MAX),
    )
    now = _now()
    return jsonify({"requests": [_request_with_grant(d, now) for d in page.items], "next_page_token": page.next_token})


@bp.get(f"{REQUESTS}/<item_id>")
def get_request(item_id: str) -> Response:
    """查看部门申请 A department request, its decision and its grant"""
    request_id = item_id
    return jsonify(_request_with_grant(_visible_request(request_id), _now()))


# ---------------------------------------------------------------- decisions


@bp.post(f"{REQUESTS}/<item_id>/approve")
def approve_request(item_id: str) -> Response:
    """批准申请 Approve a request, possibly narrowing it; the grant it becomes

    Optional body: `operations`, `fields`, `tasks` (subsets of those requested), `ends_on` (no later
    than requested), `quota` (no higher), `reason`. Of two approvers deciding at once exactly one succeeds;
    the other gets 409."""
    request_id = item_id
    p = _principal()
    body = _parse(ApproveIn, _optional_body())
    try:
        narrowing = shapes.narrowing(body)
    except BodyError as exc:
        raise _bad(exc.field, exc.message) from None
    doc = _visible_request(request_id)
    if doc["status"] != "filed":
        raise _already_decided(doc)
    try:
        grant = domain.approve(request_from_document(doc), grant_id_for(request_id), request_id, narrowing)
    except InvalidArgument as exc:
        raise _bad(exc.field, exc.message, "批准只能收窄申请范围") from None
    now = _now()
    if grant.expires_at <= now:
        raise ApiError(
            409,
            "period_ended",
            f"the request's period ended on {doc['ends_on']}; it can only be rejected (申请期限已过，只能驳回)",
        )
    decision = {"by": p.sub, "role": p.role, "at": now, "reason": (body.reason or "").strip()}
    decided = _store().decide(request_id, status="approved", decision=decision, grant=grant)
    if decided is None:
        raise _already_decided(_store().request(request_id) or doc)
    written = _store().write_grant(decided)
    narrowed = (
        set(grant.operations) != set(doc["operations"])
        or set(grant.fields) != set(doc["fields"])
        or grant.quota != doc["quota"]
        or set(grant.tasks) != set(doc.get("tasks") or ())
        or grant.expires_at.date() != date.fromisoformat(doc["ends_on"]) + timedelta(days=1)
    )
    record_grant_audit(
        grant.id,
        actor=p.sub,
        role=p.role,
        action="request.approve",
        outcome="allowed",
        tenant=grant.tenant,
        target=request_id,
        request_id=g.get("request_id") or "",
        detail={**shapes.grant_detail(written), "narrowed": narrowed},
    )
    return jsonify(shapes.grant_json(_store().grant(grant.id) or written, now=now))


@bp.post(f"{REQUESTS}/<item_id>/reject")
def reject_request(item_id: str) -> Response:
    """驳回申请 Reject a request, with the reason (required, at most 500 characters)"""
    request_id = item_id
    p = _principal()
    body = _parse(ReasonIn, _optional_body())
    try:
        reason = shapes.required_reason(body, "request is rejected")
    except BodyError as exc:
        raise _bad(exc.field, exc.message) from None
    doc = _visible_request(request_id)
    if doc["status"] != "filed":
        raise _already_decided(doc)
    now = _now()
    decided = _store().decide(
        request_id, status="rejected", decision={"by": p.sub, "role": p.role, "at": now, "reason": reason}
    )
    if decided is None:
        raise _already_decided(_store().request(request_id) or doc)
    _audit(
        "request.reject",
        "refused",
        tenant=doc["tenant"],
        target=request_id,
        detail={"kind": doc["kind"], "community_id": doc["community_id"]},
    )
    return jsonify(shapes.request_json(decided, now=now))


# ---------------------------------------------------------------- grants


def _grant_with_trail(doc: Mapping[str, Any], *, limit: int, before: int | None, now: datetime) -> dict[str, Any]:
    """The grant with the newest `limit` entries of its trail below seq `before`: every entry naming the
    grant (a refused call may name another tenant), from the audit log's read model (a moment behind)."""
    trail, more = audit_readmodel.page(grant_id=doc["_id"], before=before, limit=limit)
    return shapes.grant_json(doc, now=now, audit=trail, audit_more=more)


@bp.get(f"{GRANTS}/<item_id>")
def get_grant(item_id: str) -> Response:
    """查看授权 A grant: its scope, how much of it is used, and its audit trail (every use)

    The trail is newest first, `audit_limit` entries (default 100, at most 500); `audit_before` (from the
    previous answer's `audit_before`: the seq of its last entry) pages on. The trail is read from the
    audit log's read model, which may be a moment behind `audit_count`."""
    grant_id = item_id
    doc = _visible_grant(grant_id)
    limit = _int_arg("audit_limit", shapes.AUDIT_DEFAULT, 1, shapes.AUDIT_MAX)
    before = _int_arg("audit_before", 0, 1, SEQ_MAX) or None
    return jsonify(_grant_with_trail(doc, limit=limit, before=before, now=_now()))


@bp.get("/api/v1/tenants/<tenant>/grants")
def list_tenant_grants(tenant: str) -> Response:
    """授权列表 Every grant on a tenant, newest first, with its use and latest audit entries

    The community and the subdistrict see every grant on them and every use of it: each grant comes with
    `used`/`quota` and its `audit_limit` newest trail entries (default 10, at most 100; the whole trail
    is on GET /api/v1/grants/{item_id}). A community worker sees the grants on its own community."""
    limit = _int_arg("audit_limit", shapes.AUDIT_IN_LIST, 0, 100)
    page = _store().grants_page(
        tenant=tenant,
        after=_token_arg(is_grant_id),
        limit=_int_arg("page_size", shapes.PAGE_DEFAULT, 1, shapes.PAGE_MAX),
        community_id=list_filter(""),
    )
    now = _now()
    grants = [
        _grant_with_trail(d, limit=limit, before=None, now=now) if limit else shapes.grant_json(d, now=now)
        for d in page.items
    ]
    return jsonify({"grants": grants, "next_page_token": page.next_token})


@bp.post(f"{GRANTS}/<item_id>/revoke")
def revoke_grant(item_id: str) -> Response:
    """撤销授权 Revoke a grant, with the reason (required, at most 500 characters)"""
    grant_id = item_id
    p = _principal()
    body = _parse(ReasonIn, _optional_body())
    try:
        reason = shapes.required_reason(body, "grant is revoked")
    except BodyError as exc:
        raise _bad(exc.field, exc.message) from None
    doc = _visible_grant(grant_id)
    if doc.get("revoked"):
        raise ApiError(409, "already_revoked", f"grant {grant_id} is already revoked (该授权已撤销)")
    now = _now()
    revoked = _store().revoke(grant_id, {"by": p.sub, "role": p.role, "at": now, "reason": reason})
    if revoked is None:
        raise ApiError(409, "already_revoked", f"grant {grant_id} was revoked meanwhile (该授权已被撤销)")
    record_grant_audit(
        grant_id,
        actor=p.sub,
        role=p.role,
        action="grant.revoke",
        outcome="done",
        tenant=doc["tenant"],
        target=grant_id,
        request_id=g.get("request_id") or "",
        detail={"used": int(revoked.get("used") or 0), "quota": int(revoked.get("quota") or 0)},
    )
    return jsonify(shapes.grant_json(_store().grant(grant_id) or revoked, now=now))
