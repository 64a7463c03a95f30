"""Publications (一月一公示, 先锋榜, 月度报告) -> PublicationService (hongling.publication.v1,
services/publication/lifecycle).

Staff (logged in, tenant-scoped), /api/v1/tenants/<tenant>/publications:
    GET  publications?kind=&scope=&period=&status=&page_size=&page_token=   versions, newest period then version
    POST publications {kind, scope, period}                 a draft (subdistrict admins)
    GET  publications/{pub_id}                              one version with its content; "<kind>:<scope>:<period>"
                                                            is the current released version
    POST publications/{pub_id}/review {approve, note}       draft -> reviewed | returned (subdistrict admins)
    POST publications/{pub_id}/release                      reviewed -> released, once (subdistrict admins)
    GET  publications/{pub_id}/channels/{channel}           a rendition (wechat: {"parts", "limit"})
Public (no log-in; released versions only), /api/v1/public/tenants/<tenant>:
    GET  publications, publications/{pub_id}, publications/{pub_id}/channels/{channel}
    GET  feed.atom, communities/{community_id}/feed.atom     Atom feeds of released versions
    GET  ledger?period=YYYY-MM                              the burden ledger (减负) of that month's released report

The public routes call the service as the public role whoever calls them (a logged-in member of staff reads
there what anyone reads), so nothing unreleased can leave through them: the service answers a draft's id as
an unknown one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import grpc
from flask import Blueprint, Response, current_app, jsonify, request
from hongling.publication.v1 import publication_pb2 as pb
from hongling.publication.v1 import publication_pb2_grpc as pb_grpc
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from gateway.app import json_body
from gateway.calls import tenant_call
from gateway.errors import ApiError, from_rpc_error
from gateway.protojson import to_json
from gateway.query import MONTH, PAGE_TOKEN, PERIOD, args, matching, page_size, query, text
from gateway.routes_dispatch import DOCS, Doc, parse
from gateway.routes_org import content_disposition
from services.common import context
from services.common.errors import UnknownTenant
from services.common.principal import Principal
from services.common.tenants import get_tenant

bp = Blueprint("publications", __name__)
BASE = "/api/v1/tenants/<tenant>/publications"
PUBLIC = "/api/v1/public/tenants/<tenant>"
CHANNELS = ("html_a4", "html_a3", "pdf_a4", "pdf_a3", "wechat", "article", "json", "xlsx")
CHANNEL_RULE = f"<any({', '.join(CHANNELS)}):channel>"
KINDS = ("monthly", "boards", "report")
STATUSES = ("draft", "reviewed", "returned", "released")
KIND = text("kind", "种类 monthly (月度公示) | boards (季度先锋榜) | report (月度报告)", enum=KINDS)
SCOPE = text("scope", "范围 A community id, or * for the tenant", max_length=64)
PERIOD_PARAM = matching(
    "period",
    "期间 A month YYYY-MM or a quarter YYYYQn (Asia/Shanghai)",
    PERIOD,
    "期间格式应为YYYY-MM或YYYYQn",
    "must be a month YYYY-MM or a quarter YYYYQn",
)
STATUS = text("status", "状态 draft | reviewed | returned | released", enum=STATUSES)


def stub() -> pb_grpc.PublicationServiceStub:
    return pb_grpc.PublicationServiceStub(current_app.extensions["hongling.clients"].channels["publication"])


class CreateIn(BaseModel):
    """What to draft: the kind, its scope (a community id, or * for the tenant's) and the period."""

    model_config = ConfigDict(extra="forbid")
    kind: StrictStr = Field(description="monthly | boards | report", pattern="^(monthly|boards|report)$")
    scope: StrictStr = Field(description="a community id, or * (the tenant)", min_length=1, max_length=64)
    period: StrictStr = Field(description="YYYY-MM or YYYYQn (Asia/Shanghai)", pattern=PERIOD)


class ReviewIn(BaseModel):
    """Approve the draft, or return it with a note saying what to change."""

    model_config = ConfigDict(extra="forbid")
    approve: StrictBool
    note: StrictStr = Field("", max_length=2000, description="required when returning (approve false)")


class LedgerOut(BaseModel):
    """减负台账 The burden ledger of a month, from its released report upward."""

    period: str
    tenant: str
    ledger: list[dict[str, Any]] = Field(description="one LedgerLine per community (services/publication/content.py)")
    publication_id: str


def publication_json(msg: pb.Publication, *, with_content: bool = False) -> dict[str, Any]:
    body = to_json(msg)
    raw = body.pop("content_json", "")
    if with_content:
        body["content"] = json.loads(raw) if raw else None
    return body


def _one(msg: pb.Publication, status: int = 200) -> Response:
    resp = jsonify(publication_json(msg, with_content=True))
    resp.status_code = status
    return resp


def _page(resp: pb.ListPublicationsResponse) -> Response:
    return jsonify(
        {
            "publications": [publication_json(p) for p in resp.publications],
            "next_page_token": resp.next_page_token or None,
        }
    )


def _rendition(r: pb.Rendition, channel: str) -> Response:
    if channel == "wechat":
        return jsonify({"parts": list(r.parts), "limit": int(r.limit)})
    resp = Response(r.data, mimetype=r.content_type)
    disposition = content_disposition(r.filename, f"publication.{channel.split('_')[0]}")
    if r.content_type.startswith("text/html"):
        disposition = disposition.replace("attachment", "inline", 1)
    resp.headers["Content-Disposition"] = disposition
    return resp


def _unimplemented(exc: grpc.RpcError, field: str | None = "channel") -> ApiError | None:
    """A channel or feed not available yet (the service's UNIMPLEMENTED) as a 501 saying so."""
    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
        return None
    return ApiError(501, "not_implemented", f"{exc.details()} (该渠道尚未提供)", field=field)


def _render(tenant: str, pub_id: str, channel: str, public: bool) -> Response:
    with public_call(tenant) if public else tenant_call(tenant):
        try:
            r = stub().RenderPublication(pb.RenderPublicationRequest(id=pub_id, channel=channel))
        except grpc.RpcError as exc:
            raise _unimplemented(exc) or exc from None
    return _rendition(r, channel)


# ---------------------------------------------------------------- staff


@bp.get(BASE)
@query(KIND, SCOPE, PERIOD_PARAM, STATUS, page_size(100, 20), PAGE_TOKEN)
def list_publications(tenant: str) -> Response:
    """发布列表 The tenant's publication versions, newest period first, then the highest version

    Drafts, reviewed, returned and released versions (filter by status); without their content."""
    q = args()
    req = pb.ListPublicationsRequest(
        kind=q["kind"],
        scope=q["scope"],
        period=q["period"],
        status=q["status"],
        page_size=q["page_size"],
        page_token=q["page_token"],
    )
    with tenant_call(tenant):
        return _page(stub().ListPublications(req))


@bp.post(BASE)
def create_publication(tenant: str) -> Response:
    """生成草稿 Draft a publication from its sources now

    A series' unreleased version has its draft replaced; after a release the next version is drafted as a
    correction stating what changed (409 when nothing changed)."""
    body = parse(CreateIn, json_body())
    with tenant_call(tenant):
        created = stub().CreateDraft(pb.CreateDraftRequest(kind=body.kind, scope=body.scope, period=body.period))
    resp = _one(created, 201)
    resp.headers["Location"] = f"/api/v1/tenants/{tenant}/publications/{created.id}"
    return resp


@bp.get(f"{BASE}/<pub_id>")
def get_publication(tenant: str, pub_id: str) -> Response:
    """发布详情 One version with its content ("<kind>:<scope>:<period>": the current released version)"""
    with tenant_call(tenant):
        return _one(stub().GetPublication(pb.GetPublicationRequest(id=pub_id, with_content=True)))


@bp.post(f"{BASE}/<pub_id>/review")
def review_publication(tenant: str, pub_id: str) -> Response:
    """审核 Approve a draft, or return it with a note"""
    body = parse(ReviewIn, json_body())
    with tenant_call(tenant):
        done = stub().ReviewPublication(pb.ReviewPublicationRequest(id=pub_id, approve=body.approve, note=body.note))
    return jsonify(publication_json(done))


@bp.post(f"{BASE}/<pub_id>/release")
def release_publication(tenant: str, pub_id: str) -> Response:
    """发布 Release a reviewed version (once; it never changes afterwards)"""
    with tenant_call(tenant):
        done = stub().ReleasePublication(pb.ReleasePublicationRequest(id=pub_id))
    return jsonify(publication_json(done))


@bp.get(f"{BASE}/<pub_id>/channels/{CHANNEL_RULE}")
def render_publication(tenant: str, pub_id: str, channel: str) -> Response:
    """渠道版本 One channel of a version: notice-board page, WeChat message parts, article, JSON, xlsx

    A draft's rendition is marked 草稿 (draft). wechat answers {"parts": [...], "limit": n}; the others the
    file with its Content-Type and Content-Disposition."""
    return _render(tenant, pub_id, channel, public=False)


# ---------------------------------------------------------------- public


@contextmanager
def public_call(tenant: str) -> Iterator[None]:
    """Call as the public role on this tenant, whoever is calling (released versions only)."""
    try:
        get_tenant(tenant)
    except UnknownTenant as exc:
        raise ApiError(404, "unknown_tenant", exc.message, field="tenant") from None
    principal = Principal(sub="public", role="public", tenants=(tenant,))
    with context.bound(tenant=tenant, principal=principal):
        try:
            yield
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None


@bp.get(f"{PUBLIC}/publications")
@query(KIND, SCOPE, PERIOD_PARAM, page_size(100, 20), PAGE_TOKEN)
def public_list(tenant: str) -> Response:
    """公示列表 Released publications of a tenant, newest period first (no log-in)"""
    q = args()
    req = pb.ListPublicationsRequest(
        kind=q["kind"], scope=q["scope"], period=q["period"], page_size=q["page_size"], page_token=q["page_token"]
    )
    with public_call(tenant):
        return _page(stub().ListPublications(req))


@bp.get(f"{PUBLIC}/publications/<pub_id>")
def public_get(tenant: str, pub_id: str) -> Response:
    """公示详情 One released version with its content (no log-in; an unreleased one is 404)"""
    with public_call(tenant):
        return _one(stub().GetPublication(pb.GetPublicationRequest(id=pub_id, with_content=True)))


@bp.get(f"{PUBLIC}/publications/<pub_id>/channels/{CHANNEL_RULE}")
def public_render(tenant: str, pub_id: str, channel: str) -> Response:
    """公示渠道版本 One channel of a released version (no log-in)"""
    return _render(tenant, pub_id, channel, public=True)


def _feed(tenant: str, scope: str) -> Response:
    # An entry links to the portal's public page of its version (a person reading the feed opens that); the
    # JSON of a version is the API's GET …/publications/<id> beside it.
    base = f"{request.host_url.rstrip('/')}/portal/public/{tenant}"
    with public_call(tenant):
        try:
            found = stub().GetFeed(pb.GetFeedRequest(scope=scope, link_base=base))
        except grpc.RpcError as exc:
            raise _unimplemented(exc, None) or exc from None
    return Response(found.data, mimetype="application/atom+xml", content_type=found.content_type)


@bp.get(f"{PUBLIC}/feed.atom")
def public_feed(tenant: str) -> Response:
    """订阅源 The tenant's released publications as an Atom feed, newest first (no log-in)"""
    return _feed(tenant, "")


@bp.get(f"{PUBLIC}/communities/<community_id>/feed.atom")
def public_community_feed(tenant: str, community_id: str) -> Response:
    """社区订阅源 One community's released publications as an Atom feed, newest first (no log-in)"""
    return _feed(tenant, community_id)


@bp.get(f"{PUBLIC}/ledger")
@query(
    replace(
        matching("period", "月份 The month, YYYY-MM (Asia/Shanghai)", MONTH, "月份格式须为YYYY-MM", "must be YYYY-MM"),
        required=True,
    )
)
def public_ledger(tenant: str) -> Response:
    """减负台账 What district departments asked of each community in a month (from its released report)"""
    period = args()["period"]
    if not period:
        raise ApiError(400, "invalid_argument", "缺少必填参数 (period is required: YYYY-MM)", field="period")
    try:
        with public_call(tenant):
            found = stub().GetPublication(pb.GetPublicationRequest(id=f"report:*:{period}", with_content=True))
    except ApiError as exc:
        if exc.status == 404 and exc.code != "unknown_tenant":
            raise ApiError(
                404,
                "not_found",
                f"no report of {period} has been released (该月报告尚未发布，减负台账随报告公开)",
                field="period",
            ) from None
        raise
    content = json.loads(found.content_json or "{}")
    return jsonify(
        {"period": period, "tenant": tenant, "ledger": content.get("ledger") or [], "publication_id": found.id}
    )


DOCS.update(
    {
        "publications.list_publications": Doc(pb.Publication, list_key="publications", errors=(400,)),
        "publications.create_publication": Doc(pb.Publication, 201, CreateIn, errors=(400, 409), headers=("Location",)),
        "publications.get_publication": Doc(pb.Publication, errors=(400, 404)),
        "publications.review_publication": Doc(pb.Publication, body=ReviewIn, errors=(400, 404, 409)),
        "publications.release_publication": Doc(pb.Publication, errors=(400, 404, 409)),
        "publications.public_list": Doc(pb.Publication, list_key="publications", errors=(400,)),
        "publications.public_get": Doc(pb.Publication, errors=(400, 404)),
        "publications.public_ledger": Doc(LedgerOut, errors=(400, 404)),
    }
)
