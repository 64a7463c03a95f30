"""Issue routes for portals and residents: /api/v1/tenants/<tenant>/issues -> hongling.intake.v1.IntakeService.

    POST   issues                                  report (JSON, or multipart with attachments) -> 201
    GET    issues?status=&category=&urgency=&channel=&community_id=&grid_id=&created_from=&created_to=&text=&ids=
    GET    issues/{id}                             the issue (history, class, duplicates) and its task; ETag
    POST   issues/{id}/reclassify   If-Match       {urgency, category, reason}
    GET    issues/{id}/contact                     the reporter's contact unmasked (handlers only; logged)
    GET    issues/{id}/attachments/{aid}           a photo or PDF
    POST   issues/{id}/filing       If-Match opt.  核实立案: {decision: accept|decline, reason, referred_to, …}
    GET|PUT classification-rules                   categories, rules and filing rules of the tenant (PUT: If-Match)
    POST   assistance-tasks                        a district department's approved task, under its grant

Open311 GeoReport v2 is gateway/open311.py; who may call what is gateway/policy.py.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import grpc
from flask import Blueprint, Response, jsonify, request
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.dispatch.v1 import dispatch_pb2
from hongling.intake.v1 import intake_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import department
from gateway.app import json_body
from gateway.calls import admit, department_access, tenant_call
from gateway.calls import clients as _clients
from gateway.clients import Clients
from gateway.community import list_filter
from gateway.errors import ApiError
from gateway.governance.store import GovernanceStore, record_grant_audit
from gateway.protojson import Int32, from_json, to_json
from gateway.query import PAGE_TOKEN, args, boolean, integer, query, text, timestamp
from gateway.routes_org import content_disposition, if_match_version
from services.common.audit import AuditLog

bp = Blueprint("issues", __name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
ISSUES = "/api/v1/tenants/<tenant>/issues"
STATUS_ZH = {
    "received": "已受理",
    "pending_verification": "待核实",
    "classified": "已分类",
    "duplicate": "重复事项（随原事项办理）",
    "whistle_blown": "已吹号",
    "assigned": "已派单",
    "in_progress": "办理中",
    "done": "已办结",
    "verified": "已验收",
    "published": "已公示",
    "rated": "已评价",
    "cancelled": "已撤销",
    "declined": "不予立案",
}
URGENCY_ZH = {"routine": "日常事项", "major": "重大事项", "urgent": "紧急事项"}
# What a data-access grant on issues can name: the issue's fields, never the reporter's contact.
ISSUE_FIELDS = frozenset(f.name for f in intake_pb2.Issue.DESCRIPTOR.fields) - {"id", "contact", "version"}
# Whole issues with up to 5 attachments of 5 MiB, base64 in JSON (4/3) or multipart.
CREATE_MAX_BYTES = 36 * 1024 * 1024
CHANNEL_NAMES_ZH = {
    "household_visit": "入户走访",
    "resident_report": "居民反映",
    "online": "线上接单",
    "grid_patrol": "网格巡查",
    "hotline_12345": "12345热线",
    "department_assistance": "部门协助任务",
}


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    compound_id: str = ""


class ContactIn(BaseModel):
    """The reporter's contact: personal data, stored encrypted, masked in every answer."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    phone: str = ""


class AttachmentIn(BaseModel):
    """A photo or PDF in a JSON body (multipart bodies send files instead)."""

    model_config = ConfigDict(extra="forbid")
    filename: str = ""
    content_type: str
    content_base64: str


class CreateIssueIn(BaseModel):
    """Shapes and types only; the intake service owns the rules (lengths, channels, categories, location)."""

    model_config = ConfigDict(extra="forbid")
    title: str
    description: str
    channel: str
    category: str = ""
    location: LocationIn
    idempotency_key: str = ""
    affected_households: Int32 = 0
    hazards: list[str] = []
    contact: ContactIn | None = None
    attachments: list[AttachmentIn] = []


class AssistanceTaskIn(BaseModel):
    """An approved assistance task handed over: its title must be one the grant lists."""

    model_config = ConfigDict(extra="forbid")
    title: str
    description: str
    category: str = ""
    location: LocationIn
    idempotency_key: str = ""
    affected_households: Int32 = 0
    hazards: list[str] = []


class FilingDecisionIn(BaseModel):
    """核实立案: file (accept) a report waiting for verification, or decline it (不予立案) with a reason."""

    model_config = ConfigDict(extra="forbid")
    decision: str = Field(description="accept (受理立案) | decline (不予立案)")
    reason: str = Field(
        "",
        description="decline: out_of_scope (不属于社区职责) | duplicate | insufficient_info (信息不足) | abusive",
    )
    referred_to: str = Field(
        "", description="out_of_scope: 12345 | department | court | any other text naming where it was referred"
    )
    referred_name: str = Field("", description="department: its name (required); court or other: optional")
    duplicate_of: str = Field("", description="duplicate: the id of the issue it repeats")
    ask: str = Field("", description="insufficient_info: what the reporter is asked to add")
    note: str = Field("", description="optional, at most 500 characters; never personal data")


class ReclassifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    urgency: str = ""
    category: str = ""
    reason: str


def _time(ts: Timestamp) -> str:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=SHANGHAI).isoformat(timespec="seconds")


def issue_json(issue: intake_pb2.Issue) -> dict[str, Any]:
    """An issue as the API shows it: the intake message (proto field names, times in Asia/Shanghai, the
    reporter's contact masked) plus Chinese names and each attachment's URL."""
    out = to_json(issue)
    out.pop("follow_code", None)  # 查询码: only in the report's own answer (create_issue), at its top level
    out["channel_zh"] = CHANNEL_NAMES_ZH.get(issue.channel, issue.channel)
    out["status_zh"] = STATUS_ZH.get(issue.status, issue.status)
    out["urgency_zh"] = URGENCY_ZH.get(issue.urgency, issue.urgency)
    out["grant_id"] = issue.grant_id or None
    for a in out["attachments"]:
        a["url"] = f"{ISSUES.replace('<tenant>', issue.tenant)}/{issue.id}/attachments/{a['id']}"
    return out


def task_json(task: dispatch_pb2.Task) -> dict[str, Any]:
    return {"id": task.id, "issue_id": task.issue_id, "status": task.status, "created_at": _time(task.created_at)}


def _validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    kinds = {"missing": "is required (必填)", "extra_forbidden": "is not a known field (未知字段)"}
    bounds = {"less_than_equal": "超出范围", "greater_than_equal": "超出范围", "too_long": "过长"}
    text = kinds.get(err["type"]) or f"{err['msg']}" + (f" ({bounds[err['type']]})" if err["type"] in bounds else "")
    message = f"{field} {text}"
    return ApiError(400, "invalid_argument", message, field=field)


def _attachments(items: list[AttachmentIn]) -> list[intake_pb2.AttachmentUpload]:
    out = []
    for n, a in enumerate(items):
        try:
            content = base64.b64decode(a.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                400, "invalid_argument", "content_base64 is not base64 (附件编码错误)", field=f"attachments[{n}]"
            ) from None
        out.append(intake_pb2.AttachmentUpload(filename=a.filename, content_type=a.content_type, content=content))
    return out


def _create_request(
    data: CreateIssueIn | AssistanceTaskIn, channel: str, key: str, grant_id: str = ""
) -> intake_pb2.CreateIssueRequest:
    loc = data.location
    req = intake_pb2.CreateIssueRequest(
        title=data.title,
        description=data.description,
        channel=channel,
        category=data.category,
        location=common_pb2.Location(lat=loc.lat, lon=loc.lon, address=loc.address, compound_id=loc.compound_id),
        idempotency_key=key,
        grant_id=grant_id,
        affected_households=data.affected_households,
        hazards=data.hazards,
    )
    if isinstance(data, CreateIssueIn):
        if data.contact is not None:
            req.contact.CopyFrom(intake_pb2.Contact(name=data.contact.name, phone=data.contact.phone))
        req.attachments.extend(_attachments(data.attachments))
    return req


def _create_body() -> tuple[dict[str, Any], list[intake_pb2.AttachmentUpload]]:
    """The issue (JSON body, or multipart: field `issue` as JSON plus files `attachments`) and uploaded files."""
    request.max_content_length = CREATE_MAX_BYTES
    if request.mimetype != "multipart/form-data":
        return json_body(), []
    raw = request.form.get("issue")
    if raw is None:
        raise ApiError(400, "invalid_argument", "send the issue as JSON in the form field 'issue'", field="issue")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        raise ApiError(
            400, "invalid_argument", "the form field 'issue' is not JSON (格式错误)", field="issue"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_argument", "the form field 'issue' must be a JSON object", field="issue")
    files = [
        intake_pb2.AttachmentUpload(filename=f.filename or "", content_type=f.mimetype or "", content=f.read())
        for f in request.files.getlist("attachments")
    ]
    return body, files


def hand_over(
    access: department.Access,
    req: intake_pb2.CreateIssueRequest,
    clients: Clients,
    *,
    key: str = "",
    audit: AuditLog | None = None,
    store: GovernanceStore | None = None,
) -> intake_pb2.Issue:
    """Hand over an assistance task under its grant (both doors; the caller binds the tenant and principal):
    its location checked against the granted community, the use counted, intake's issue created (a retry
    with the same `key` returns the first), and the hand-over recorded in the grant's trail."""
    community_id = department.task_community(clients.org.ResolveLocation, req.location)
    admit(access, target="assistance-tasks", community_id=community_id)
    req.idempotency_key = f"{access.grant.id}:{key}" if key else ""
    issue: intake_pb2.Issue = clients.intake.CreateIssue(req)
    p = access.call.principal
    record_grant_audit(
        access.grant.id,
        actor=p.sub,
        role=p.role,
        action="assistance_task.hand_over",
        outcome="done",
        tenant=access.call.tenant,
        target=f"issues/{issue.id}",
        request_id=access.call.request_id,
        detail={"community_id": access.community_id, "use": access.use},
        audit=audit,
        store=store,
    )
    return issue


@bp.post("/api/v1/tenants/<tenant>/assistance-tasks")
def hand_over_task(tenant: str) -> tuple[Response, int]:
    """移交协助任务 Hand over an approved assistance task (district departments, under their grant)

    Header `X-Hongling-Grant: gr-…` names the assistance grant; `title` must be one of the tasks it
    approves and `location` (a point or compound) must lie in the granted community; each hand-over
    counts against its quota. The task enters intake on the channel
    department_assistance, tagged with the grant; the grant's community and subdistrict see it in the
    grant's trail. `idempotency_key`: a retry with the same key returns the first issue (but counts again
    against the quota, which is never exceeded)."""
    body = json_body()
    try:
        data = AssistanceTaskIn.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    access = department_access()
    if access is None:  # the policy admits only departments under a grant here
        raise ApiError(403, "forbidden", "only a district department under an assistance grant hands over tasks")
    grant_id = access.grant.id
    req = _create_request(data, "department_assistance", "", grant_id)
    with tenant_call(tenant):
        issue = hand_over(access, req, _clients(), key=data.idempotency_key)
    resp = jsonify({"issue": issue_json(issue), "grant": {"id": grant_id, "quota": access.grant.quota}})
    resp.headers["Location"] = f"/api/v1/tenants/{tenant}/issues/{issue.id}"
    return resp, 201


@bp.post(ISSUES)
def create_issue(tenant: str) -> tuple[Response, int]:
    """上报事项 Report an issue (every channel; placed in its grid, classified, checked for duplicates)

    JSON, or multipart/form-data with the issue as JSON in the field `issue` and photos/PDFs as files
    `attachments` (at most 5, 5 MiB each; JPEG, PNG, WebP, PDF). `location` needs a point (lat, lon) or a
    compound id inside a grid of the tenant. `contact` is stored encrypted and never shown unmasked
    except to those handling the issue."""
    body, files = _create_body()
    try:
        data = CreateIssueIn.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    req = _create_request(data, data.channel, data.idempotency_key)
    req.attachments.extend(files)
    with tenant_call(tenant):
        issue = _clients().intake.CreateIssue(req)
    # 查询码: shown once, here; only its hash is kept (null for a retried idempotency key).
    resp = jsonify({"issue": issue_json(issue), "task": None, "follow_code": issue.follow_code or None})
    resp.headers["Location"] = f"/api/v1/tenants/{tenant}/issues/{issue.id}"
    resp.headers["Cache-Control"] = "no-store"
    return resp, 201


def _task(issue_id: str) -> dict[str, Any] | None:
    try:
        return task_json(_clients().dispatch.GetTaskForIssue(dispatch_pb2.GetTaskForIssueRequest(issue_id=issue_id)))
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None


@bp.get(f"{ISSUES}/<issue_id>")
def get_issue(tenant: str, issue_id: str) -> Response:
    """查看事项 One issue: status, readable history, class with reasons, duplicates both ways, its task

    A district department reads an issue only under a data-access grant (`intake.read:issues`) covering
    its community: `id` and the granted fields."""
    access = department_access()
    with tenant_call(tenant):
        issue = _clients().intake.GetIssue(intake_pb2.GetIssueRequest(id=issue_id))
        if access is not None:
            admit(access, target=f"issues/{issue_id}", community_id=issue.place.community_id)
            return jsonify(department.project(issue_json(issue), access.fields))
        task = _task(issue_id)
    resp = jsonify({"issue": issue_json(issue), "task": task})
    resp.headers["ETag"] = f'"{issue.version}"'
    return resp


SEARCH_TEXT_MAX = 100  # the intake service's limit (services/intake/domain.py TEXT_MAX)
IDS_MAX = 100
LIST_QUERY = (
    integer("page_size", "每页条数 Issues per page, 1..100; 0: 20", lo=0, hi=100, default=20),
    PAGE_TOKEN,
    text("status", "状态 Status", enum=STATUS_ZH),
    text("category", "类别 A category code of the tenant (GET classification-rules); another is 400"),
    text("urgency", "分类 routine (日常), major (重大), urgent (紧急)", enum=URGENCY_ZH),
    text("channel", "渠道 Channel", enum=CHANNEL_NAMES_ZH),
    text("community_id", "社区 Community"),
    text("grid_id", "网格 Grid"),
    timestamp("created_from", "起 Created at or after"),
    timestamp("created_to", "止 Created before"),
    text("text", "关键词 Title or description contains (case-insensitive)", max_length=SEARCH_TEXT_MAX),
    text("ids", f"编号 Comma-separated issue ids, at most {IDS_MAX}", max_length=IDS_MAX * 40),
    boolean("verification_overdue", "核实超时 Only reports nobody filed or declined by their verification deadline"),
)


@bp.get(ISSUES)
@query(*LIST_QUERY)
def list_issues(tenant: str) -> Response:
    """查询事项 Search issues, newest first: status, category, urgency, channel, community_id, grid_id,
    created_from / created_to (RFC 3339), text, ids (comma list), verification_overdue; paged

    A district department lists only under a data-access grant (`intake.read:issues`): its community's
    issues, `id` and the granted fields, filters on granted fields only. A community worker lists its own
    community's issues (community_id naming another: 403 `community_out_of_scope`)."""
    access = department_access()
    q = args()
    known = ("status", "category", "urgency", "channel", "community_id", "grid_id", "text")
    req = intake_pb2.ListIssuesRequest(
        page_size=q["page_size"],
        page_token=q["page_token"],
        ids=[i.strip() for i in q["ids"].split(",") if i.strip()],
    )
    for name in known:
        setattr(req, name, q[name])
    req.verification_overdue = q["verification_overdue"]
    req.community_id = list_filter(req.community_id)  # a community worker's own community (gateway/policy.py)
    for name in ("created_from", "created_to"):
        if q[name] is not None:
            getattr(req, name).FromDatetime(q[name].astimezone(UTC))
    if access is not None:
        req.community_id = access.community_id
        admit(access, target="issues")
    with tenant_call(tenant):
        resp = _clients().intake.ListIssues(req)
    issues = [issue_json(i) for i in resp.issues]
    if access is not None:
        issues = [department.project(i, access.fields) for i in issues]
    return jsonify({"issues": issues, "next_page_token": resp.next_page_token or None})


@bp.get("/api/v1/tenants/<tenant>/issue-counts")
@query(text("community_id", "社区 Community; empty: the whole tenant"))
def count_issues(tenant: str) -> Response:
    """事项统计 Issues by status, of the tenant or one community (a community worker: its own)

    Kept by the read model beside its rows, so a count costs the same however many issues there are; it
    follows a change within moments (the projector), like the lists."""
    community_id = list_filter(args()["community_id"])  # a community worker: its own community
    with tenant_call(tenant):
        resp = _clients().intake.CountIssues(intake_pb2.CountIssuesRequest(community_id=community_id))
    by_status = dict(sorted(resp.by_status.items()))
    return jsonify(
        {
            "community_id": community_id or None,
            "total": resp.total,
            "by_status": by_status,
            "by_status_zh": {STATUS_ZH.get(k, k): v for k, v in by_status.items()},
        }
    )


@bp.post(f"{ISSUES}/<issue_id>/reclassify")
def reclassify_issue(tenant: str, issue_id: str) -> Response:
    """重新分类 Reclassify an issue (community workers, subdistrict admins), with a reason

    `If-Match` must carry the version read (ETag of GET); the change is kept in the history and
    announced as IssueReclassified."""
    version = if_match_version(request.headers.get("If-Match"))
    try:
        data = ReclassifyIn.model_validate(json_body())
    except ValidationError as exc:
        raise _validation_error(exc) from None
    req = intake_pb2.ReclassifyIssueRequest(
        id=issue_id, urgency=data.urgency, category=data.category, reason=data.reason, version=version
    )
    with tenant_call(tenant, conditional=True):
        issue = _clients().intake.ReclassifyIssue(req)
    resp = jsonify({"issue": issue_json(issue)})
    resp.headers["ETag"] = f'"{issue.version}"'
    return resp


@bp.post(f"{ISSUES}/<issue_id>/filing")
def decide_filing(tenant: str, issue_id: str) -> Response:
    """核实立案 File (accept) or decline (不予立案) a report waiting for verification (community workers of its
    community, subdistrict admins)

    `{"decision": "accept"}` files it: it goes on to dispatch as any report (IssueFiled, IssueClassified).
    `{"decision": "decline", "reason": …}` closes it with the reason the reporter reads on the issue and in
    Open311: `out_of_scope` with `referred_to` (`12345`, `department` + `referred_name`, `court`, or any other
    text naming where), `duplicate` with `duplicate_of`, `insufficient_info` with `ask` (what the reporter should
    add), `abusive`; `note` optional. No phone or ID number in any text. An issue that does not wait for
    verification (decided already, or filed directly) is 409 `already_decided`. `If-Match` (optional): the
    version read; a stale one is 412."""
    header = request.headers.get("If-Match")
    version = if_match_version(header) if header is not None else 0
    try:
        data = FilingDecisionIn.model_validate(json_body())
    except ValidationError as exc:
        raise _validation_error(exc) from None
    req = intake_pb2.DecideFilingRequest(id=issue_id, version=version, **data.model_dump())
    with tenant_call(tenant, conditional=bool(version)):
        issue = _clients().intake.DecideFiling(req)
        task = _task(issue_id) if issue.status != "declined" else None
    resp = jsonify({"issue": issue_json(issue), "task": task})
    resp.headers["ETag"] = f'"{issue.version}"'
    return resp


@bp.get(f"{ISSUES}/<issue_id>/contact")
def reveal_contact(tenant: str, issue_id: str) -> Response:
    """查看联系方式 The reporter's contact unmasked (community workers, subdistrict admins; logged)"""
    with tenant_call(tenant):
        contact = _clients().intake.RevealContact(intake_pb2.RevealContactRequest(id=issue_id))
    resp = jsonify({"name": contact.name, "phone": contact.phone})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get(f"{ISSUES}/<issue_id>/attachments/<attachment_id>")
def get_attachment(tenant: str, issue_id: str, attachment_id: str) -> Response:
    """附件 An issue's photo or PDF, as uploaded"""
    with tenant_call(tenant):
        found = _clients().intake.GetAttachment(
            intake_pb2.GetAttachmentRequest(issue_id=issue_id, attachment_id=attachment_id)
        )
    a = found.attachment
    resp = Response(found.content, content_type=a.content_type)
    resp.headers["Content-Disposition"] = content_disposition(a.filename, f"{a.id}").replace("attachment;", "inline;")
    resp.headers["ETag"] = f'"{a.sha256}"'
    resp.headers["Cache-Control"] = "private, max-age=3600"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


RULES = "/api/v1/tenants/<tenant>/classification-rules"


@bp.get(RULES)
def get_rules(tenant: str) -> Response:
    """分类规则 The tenant's issue categories and classification rules (日常 / 重大 / 紧急), with its version"""
    with tenant_call(tenant):
        rules = _clients().intake.GetClassificationRules(intake_pb2.GetClassificationRulesRequest())
    resp = jsonify(to_json(rules))
    resp.headers["ETag"] = f'"{rules.version}"'
    return resp


@bp.put(RULES)
def put_rules(tenant: str) -> Response:
    """修改分类规则 Replace the tenant's categories and rules (subdistrict admins); If-Match: the version read

    Version "0" is the shipped default catalogue, until the tenant saves its own."""
    header = request.headers.get("If-Match")
    version = 0 if header is not None and header.strip() == '"0"' else if_match_version(header)
    msg = from_json(json_body(), intake_pb2.ClassificationRules, drop=("version",))
    msg.version = version
    with tenant_call(tenant, conditional=True):
        rules = _clients().intake.PutClassificationRules(msg)
    resp = jsonify(to_json(rules))
    resp.headers["ETag"] = f'"{rules.version}"'
    return resp
