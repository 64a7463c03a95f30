"""Dispatch for the portals: /api/v1/tenants/<tenant>/... -> hongling.dispatch.v1.DispatchService.

    GET    whistles?community_id=&status=&call_type=&responder_id=    the whistle board (集结号), newest first
    POST   whistles                                 blow a call by hand for one or several issues -> 201
    GET    whistles/{id}                            one call: targets, report-ins, places left; ETag
    POST   whistles/{id}/report-ins                 报到: accept | decline (reason) | propose another -> 201
    GET    tasks?status=&community_id=&grid_id=&assignee=&whistle_id=&call_type=&overdue=
    GET    tasks/overdue?community_id=&deadline=    past a deadline and unfinished, most overdue first
    GET    tasks/mine                               a member's own tasks (lead or crew)
    GET    tasks/{id}                               one task, its history and allowed actions; ETag
    POST   tasks/{id}/claims                        认领 a place (lead or assistant) -> 201
    GET    tasks/{id}/candidates?limit=             点将台: helpers ranked, each score with its reasons
    POST   tasks/{id}/assignment       If-Match     点将: assign (from the list, or an override with a reason)
    POST   tasks/{id}/assignment/response If-Match  the assignee accepts or declines (reason)
    POST   tasks/{id}/transitions      If-Match     start, done, verify, reject, reopen, cancel (reason)
    GET|PUT dispatch-rules             (PUT If-Match) deadlines and places per call type
    GET    /api/v1/dispatch/overdue?tenant=         ops: a tenant's overdue list, read-only (district-wide route)

Members (role `member`: a member unit's contact, a registered party member or volunteer) act only as the
helper their token or account is bound to (Principal.responder): the gateway puts that helper into the
request and refuses a body naming another; they answer calls, claim, answer their assignment and start or
finish the tasks they lead. Staff (community workers, subdistrict admins) record the same on a helper's
behalf, naming the helper. A community worker's lists are its own community's and another community's
call or task is 404 (社区范围). Who may call what is gateway/policy.py; the dispatch service checks again.
Bodies and answers are the protobuf messages as JSON with proto field names (gateway/protojson.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from flask import Blueprint, Response, g, jsonify, request
from google.protobuf.message import Message
from hongling.dispatch.v1 import dispatch_pb2 as pb
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from gateway.app import json_body
from gateway.calls import clients, tenant_call
from gateway.community import list_filter
from gateway.errors import ApiError
from gateway.protojson import from_json, to_json
from gateway.query import PAGE_TOKEN, SCOPE_TENANT, args, boolean, integer, page_size, query, text
from gateway.routes_issues import _validation_error
from gateway.routes_org import if_match_version
from services.common.principal import KIND_ALIASES, Principal

bp = Blueprint("dispatch", __name__)
TENANT = "/api/v1/tenants/<tenant>"
WHISTLES = f"{TENANT}/whistles"
TASKS = f"{TENANT}/tasks"
RULES = f"{TENANT}/dispatch-rules"
MEMBER_ACTIONS = ("start", "done")  # a member starts and finishes the tasks it leads; verifying is the community's
# Fields of DispatchRules a client may send back as it read them; ignored (the call types' names are too).
RULES_READ_ONLY = ("version", "updated_at", "updated_by")
# What the dispatch service accepts (services/dispatch/domain.py, handlers.py): declared once here for the
# query parameters below, which check and document them (gateway/query.py).
PAGE_MAX, PAGE_DEFAULT = 200, 50
CALL_TYPES = ("service", "tackling", "emergency")
TASK_STATUSES = ("open", "assigned", "accepted", "in_progress", "done", "verified", "rejected", "reopened", "cancelled")
PAGED = (page_size(PAGE_MAX, PAGE_DEFAULT), PAGE_TOKEN)
COMMUNITY = text("community_id", "社区 Community")
CALL_TYPE = text(
    "call_type", "集结号类型 Call type: service 服务集结号, tackling 攻坚集结号, emergency 紧急集结号", enum=CALL_TYPES
)
TASK_STATUS = text("status", "状态 Task status", enum=TASK_STATUSES)


# ---------------------------------------------------------------- request bodies (shapes; the service owns the rules)


class ResponderIn(BaseModel):
    """A helper: kind member_unit (成员单位; "unit" is read as member_unit), person (个人) or team (志愿者队伍)."""

    model_config = ConfigDict(extra="forbid")
    kind: StrictStr
    id: StrictStr


class BlowWhistleIn(BaseModel):
    """A call blown by hand for 1..50 issues of one community (their tasks exist and are not finished)."""

    model_config = ConfigDict(extra="forbid")
    issue_ids: list[StrictStr] = Field(min_length=1, max_length=50)
    call_type: StrictStr = Field("", description="service | tackling | emergency; empty: from the issues' class")
    note: StrictStr = ""
    targets: list[ResponderIn] = Field(default_factory=list, description="named by hand, besides those found")
    idempotency_key: StrictStr = ""


class ReportInIn(BaseModel):
    """报到: accept, decline (reason), or propose another helper (reason, proposed). `responder`: staff name
    the helper they record for; a member answers as itself (omit it)."""

    model_config = ConfigDict(extra="forbid")
    answer: Literal["accept", "decline", "propose"]
    reason: StrictStr = ""
    proposed: ResponderIn | None = None
    responder: ResponderIn | None = None


class ClaimIn(BaseModel):
    """认领: `role` lead | assistant | "" (the lead if free, else an assistant place). `claimant`: staff name
    the helper they record for; a member claims as itself (omit it)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["", "lead", "assistant"] = ""
    claimant: ResponderIn | None = None


class AssignIn(BaseModel):
    """点将: the helper; `reason` is needed for someone outside the ranked list or to replace a pending assignee."""

    model_config = ConfigDict(extra="forbid")
    assignee: ResponderIn
    reason: StrictStr = ""


class AssignmentResponseIn(BaseModel):
    """The assignee's answer: accept, or decline with a reason (the lead place is free again)."""

    model_config = ConfigDict(extra="forbid")
    answer: Literal["accept", "decline"]
    reason: StrictStr = ""


class TransitionIn(BaseModel):
    """start, done, verify, reject (reason), reopen, cancel (reason)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["start", "done", "verify", "reject", "reopen", "cancel"]
    reason: StrictStr = ""


def parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """The body as the model, or a 400 naming the first field that does not fit."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def responder_pb(r: ResponderIn | None) -> pb.Responder | None:
    return pb.Responder(kind=r.kind.strip(), id=r.id.strip()) if r is not None else None


# ---------------------------------------------------------------- who is calling


def caller() -> Principal:
    principal: Principal = g.principal
    return principal


def acting_as(named: ResponderIn | None, field_name: str) -> pb.Responder:
    """The helper a report-in or claim is for: a member's own (a body naming another is refused), or the one
    a staff member names (required)."""
    p = caller()
    if p.role == "member":
        if p.responder is None:  # principal.verify and the token store refuse this; never assume it
            raise ApiError(403, "forbidden", "this member credential is bound to no helper (未绑定成员单位或个人)")
        kind, rid = p.responder
        asked = (KIND_ALIASES.get(named.kind.strip(), named.kind.strip()), named.id.strip()) if named else None
        if asked is not None and asked != p.responder:
            raise ApiError(
                403,
                "not_your_responder",
                f"a member acts only as {kind}:{rid}, not as {asked[0]}:{asked[1]} (成员只能以本单位/本人身份操作)",
                field=field_name,
            )
        return pb.Responder(kind=kind, id=rid)
    if named is None:
        raise ApiError(
            400,
            "invalid_argument",
            f"{field_name} is required (必填): the helper this is recorded for, {{kind, id}}",
            field=field_name,
        )
    return pb.Responder(kind=named.kind.strip(), id=named.id.strip())


# ---------------------------------------------------------------- answers


def message(msg: Message, status: int = 200, *, etag: bool = True, location: str = "") -> Response:
    body = to_json(msg)
    resp = jsonify(body)
    resp.status_code = status
    if etag and "version" in body:
        resp.headers["ETag"] = f'"{body["version"]}"'
    if location:
        resp.headers["Location"] = location
    return resp


def page(key: str, items: list[Message], token: str) -> Response:
    return jsonify({key: [to_json(m) for m in items], "next_page_token": token or None})


def optional_version() -> int:
    """If-Match when sent (a stale one is 412), else 0: no check (answers to a call are not conflicts)."""
    header = request.headers.get("If-Match")
    return if_match_version(header) if header is not None else 0


def task_url(tenant: str, task_id: str) -> str:
    return f"/api/v1/tenants/{tenant}/tasks/{task_id}"


# ---------------------------------------------------------------- the whistle board


@bp.get(WHISTLES)
@query(
    COMMUNITY,
    text("status", "状态 open (some task unfinished), closed", enum=("open", "closed")),
    CALL_TYPE,
    text("responder_id", "报到对象 Calls that target this unit or person"),
    *PAGED,
)
def list_whistles(tenant: str) -> Response:
    """集结号看板 The whistle board: calls newest first, with targets, report-ins and places left

    Filters: community_id, status (open, closed), call_type (service 服务集结号, tackling 攻坚集结号,
    emergency 紧急集结号), responder_id (calls that target this unit or person); page_size 1..200, page_token."""
    req = pb.ListWhistlesRequest(**args())
    req.community_id = list_filter(req.community_id)  # a community worker: its own community's calls
    with tenant_call(tenant):
        resp = clients().dispatch.ListWhistles(req)
    return page("whistles", list(resp.whistles), resp.next_page_token)


@bp.post(WHISTLES)
def blow_whistle(tenant: str) -> tuple[Response, int] | Response:
    """吹号 Blow a call by hand for one or several issues of one community

    The call type follows the most urgent issue's class unless `call_type` says otherwise; it targets the
    community's member units and the best-matching helpers, plus `targets` named by hand. A retry with the
    same `idempotency_key` answers the first call."""
    data: BlowWhistleIn = parse(BlowWhistleIn, json_body())
    req = pb.BlowWhistleRequest(
        issue_ids=[i.strip() for i in data.issue_ids],
        call_type=data.call_type.strip(),
        note=data.note,
        targets=[pb.Responder(kind=t.kind.strip(), id=t.id.strip()) for t in data.targets],
        idempotency_key=data.idempotency_key,
    )
    with tenant_call(tenant):
        whistle = clients().dispatch.BlowWhistle(req)
    return message(whistle, 201, location=f"/api/v1/tenants/{tenant}/whistles/{whistle.id}")


@bp.get(f"{WHISTLES}/<whistle_id>")
def get_whistle(tenant: str, whistle_id: str) -> Response:
    """查看集结号 One call: its tasks and places left, targets, report-ins (late or silent), deadlines"""
    with tenant_call(tenant):
        whistle = clients().dispatch.GetWhistle(pb.GetWhistleRequest(id=whistle_id))
    return message(whistle)


@bp.post(f"{WHISTLES}/<whistle_id>/report-ins")
def report_in(tenant: str, whistle_id: str) -> tuple[Response, int] | Response:
    """报到 Answer a call: accept, decline with a reason, or propose another helper (with a reason)

    A member answers as the helper its token is bound to; staff record an answer for the helper named in
    `responder`. After the report-in deadline the answer is still recorded, marked late; answering again
    replaces the earlier answer. If-Match is optional (a stale one is 412)."""
    data: ReportInIn = parse(ReportInIn, json_body())
    if data.answer == "propose" and data.proposed is None:
        raise ApiError(
            400, "invalid_argument", "proposed is required to propose another helper (须指明推荐对象)", field="proposed"
        )
    if data.answer != "propose" and data.proposed is not None:
        raise ApiError(400, "invalid_argument", "proposed goes only with answer propose", field="proposed")
    version = optional_version()
    req = pb.ReportInRequest(
        whistle_id=whistle_id,
        responder=acting_as(data.responder, "responder"),
        answer=data.answer,
        reason=data.reason,
        proposed=responder_pb(data.proposed),
        expected_version=version,
    )
    with tenant_call(tenant, conditional=bool(version)):
        whistle = clients().dispatch.ReportIn(req)
    return message(whistle, 201, location=f"/api/v1/tenants/{tenant}/whistles/{whistle.id}")


# ---------------------------------------------------------------- tasks


@bp.get(TASKS)
@query(
    TASK_STATUS,
    COMMUNITY,
    text("grid_id", "网格 Grid"),
    text("assignee", "承办 The lead or any crew member (unit, person or team id)"),
    text("whistle_id", "集结号 Tasks on this call"),
    CALL_TYPE,
    boolean("overdue", "超时 Only unfinished tasks past their completion deadline"),
    *PAGED,
)
def list_tasks(tenant: str) -> Response:
    """任务列表 Tasks, newest first: status, community_id, grid_id, assignee (the lead or any crew member),
    whistle_id, call_type, overdue=true; page_size 1..200, page_token"""
    q = args()
    req = pb.ListTasksRequest(
        page_size=q["page_size"],
        page_token=q["page_token"],
        status=q["status"],
        community_id=list_filter(q["community_id"]),  # a community worker: its own community's tasks
        grid_id=q["grid_id"],
        assignee_id=q["assignee"],
        whistle_id=q["whistle_id"],
        overdue=q["overdue"],
        call_type=q["call_type"],
    )
    with tenant_call(tenant):
        resp = clients().dispatch.ListTasks(req)
    return page("tasks", list(resp.tasks), resp.next_page_token)


OVERDUE_QUERY = (
    COMMUNITY,
    text("deadline", "时限 Which deadline: report_in or completion; absent: either", enum=("report_in", "completion")),
    *PAGED,
)


def _overdue(tenant: str) -> Response:
    q = args()
    req = pb.ListOverdueRequest(**{k: v for k, v in q.items() if k != "tenant"})
    req.community_id = list_filter(req.community_id)  # a community worker: its own community's tasks
    with tenant_call(tenant):
        resp = clients().dispatch.ListOverdue(req)
    return page("tasks", list(resp.tasks), resp.next_page_token)


@bp.get(f"{TASKS}/overdue")
@query(*OVERDUE_QUERY)
def list_overdue(tenant: str) -> Response:
    """超时任务 Tasks past their report-in or completion deadline and unfinished, most overdue first

    `deadline`: report_in (no lead yet past the report-in deadline), completion, or either (absent)."""
    return _overdue(tenant)


@bp.get("/api/v1/dispatch/overdue")
@query(SCOPE_TENANT, *OVERDUE_QUERY)
def list_overdue_district() -> Response:
    """超时任务（运维只读） A tenant's overdue tasks for ops, read-only: ?tenant= (in the token's scope)

    The same list as GET /api/v1/tenants/{tenant}/tasks/overdue, on a district-wide route: ops get no
    tenant-scoped route (gateway/policy.py)."""
    tenant: str = args()["tenant"]
    return _overdue(tenant)


@bp.get(f"{TASKS}/mine")
@query(TASK_STATUS, *PAGED)
def my_tasks(tenant: str) -> Response:
    """我的任务 A member's own tasks: those it leads or helps on, newest first

    The helper is the one the member's token or account is bound to. Filters: status; page_size, page_token."""
    p = caller()
    if p.responder is None:  # only members are admitted (gateway/policy.py), and each is bound to a helper
        raise ApiError(403, "forbidden", "only a member bound to a helper has tasks of its own (仅成员可用)")
    req = pb.ListTasksRequest(**args(), assignee_id=p.responder[1])
    with tenant_call(tenant):
        resp = clients().dispatch.ListTasks(req)
    kind = p.responder[0]
    # assignee_id matches any kind: keep the member's own (a person and a unit may share an id)
    tasks = [t for t in resp.tasks if any((c.kind, c.id) == (kind, p.responder[1]) for c in t.crew)]
    return page("tasks", tasks, resp.next_page_token)


@bp.get(f"{TASKS}/<task_id>")
def get_task(tenant: str, task_id: str) -> Response:
    """查看任务 One task: status, crew and places, assignment, deadlines, history, allowed actions; ETag"""
    with tenant_call(tenant):
        task = clients().dispatch.GetTask(pb.GetTaskRequest(id=task_id))
    return message(task)


@bp.post(f"{TASKS}/<task_id>/claims")
def claim_task(tenant: str, task_id: str) -> tuple[Response, int] | Response:
    """认领 Take a place on a task: the lead (an open task is then assigned to the claimant, accepted) or an
    assistant place

    Places are never over-filled: of two claimants racing for the last place one wins (201), the other gets
    409 (名额已满). Claiming again the place one holds answers the task unchanged. A member claims as
    itself; staff record a claim for the helper named in `claimant`."""
    data: ClaimIn = parse(ClaimIn, json_body())
    req = pb.ClaimTaskRequest(task_id=task_id, claimant=acting_as(data.claimant, "claimant"), role=data.role)
    with tenant_call(tenant):
        task = clients().dispatch.ClaimTask(req)
    return message(task, 201, location=task_url(tenant, task.id))


@bp.get(f"{TASKS}/<task_id>/candidates")
@query(integer("limit", "条数 Candidates, 1..100; 0 or absent: 20", lo=0, hi=100, default=0))
def rank_candidates(tenant: str, task_id: str) -> Response:
    """点将台 Helpers for the task ranked best first, each score with its reasons; limit 1..100 (20)

    Each candidate says whether it is already on the task (on_crew) and whether it accepted the task's call
    (reported_in)."""
    req = pb.RankCandidatesRequest(task_id=task_id, limit=args()["limit"])
    with tenant_call(tenant):
        resp = clients().dispatch.RankCandidates(req)
    return jsonify(to_json(resp))


@bp.post(f"{TASKS}/<task_id>/assignment")
def assign_task(tenant: str, task_id: str) -> Response:
    """点将派单 Assign the task to a helper, from the ranked list or as an override with a reason

    The task must be open, or assigned and awaiting an answer (replacing that assignee needs a reason).
    If-Match: the task's version (ETag)."""
    version = if_match_version(request.headers.get("If-Match"))
    data: AssignIn = parse(AssignIn, json_body())
    req = pb.AssignTaskRequest(
        task_id=task_id,
        assignee=pb.Responder(kind=data.assignee.kind.strip(), id=data.assignee.id.strip()),
        reason=data.reason,
        expected_version=version,
    )
    with tenant_call(tenant, conditional=True):
        task = clients().dispatch.AssignTask(req)
    return message(task)


@bp.post(f"{TASKS}/<task_id>/assignment/response")
def respond_to_assignment(tenant: str, task_id: str) -> Response:
    """接单答复 The assignee accepts (assigned → accepted) or declines with a reason (assigned → open)

    A member answers only the assignment made to itself (the service refuses any other with 403
    `not_your_task`, checked on the task as it writes it); staff record the assignee's answer.
    If-Match: the task's version (ETag)."""
    version = if_match_version(request.headers.get("If-Match"))
    data: AssignmentResponseIn = parse(AssignmentResponseIn, json_body())
    req = pb.RespondToAssignmentRequest(
        task_id=task_id, accept=data.answer == "accept", reason=data.reason, expected_version=version
    )
    with tenant_call(tenant, conditional=True):
        task = clients().dispatch.RespondToAssignment(req)
    return message(task)


@bp.post(f"{TASKS}/<task_id>/transitions")
def transition_task(tenant: str, task_id: str) -> Response:
    """任务流转 Move a task on: start, done, verify, reject (reason), reopen, cancel (reason)

    start: accepted|reopened → in_progress; done: in_progress → done; verify: done → verified; reject:
    done → rejected; reopen: rejected → reopened; cancel: any unfinished → cancelled. An illegal move is 409
    naming the task's status. A member may only start and finish a task it leads (another action is 403
    here; another's task is the service's 403 `not_your_task`); verifying is the community's.
    If-Match: the task's version (ETag)."""
    version = if_match_version(request.headers.get("If-Match"))
    data: TransitionIn = parse(TransitionIn, json_body())
    if caller().role == "member" and data.action not in MEMBER_ACTIONS:
        raise ApiError(
            403,
            "forbidden",
            f"a member may only {' or '.join(MEMBER_ACTIONS)} a task it leads, not {data.action} it "
            "(成员只能开始办理或办结本人承办的任务；验收等由社区办理)",
            field="action",
        )
    req = pb.TransitionTaskRequest(task_id=task_id, action=data.action, reason=data.reason, expected_version=version)
    with tenant_call(tenant, conditional=True):
        task = clients().dispatch.TransitionTask(req)
    return message(task)


# ---------------------------------------------------------------- rules


@bp.get(RULES)
def get_rules(tenant: str) -> Response:
    """派单规则 The tenant's deadlines and places per call type (defaults until it stores its own); ETag"""
    with tenant_call(tenant):
        rules = clients().dispatch.GetDispatchRules(pb.GetDispatchRulesRequest())
    return message(rules)


@bp.put(RULES)
def put_rules(tenant: str) -> Response:
    """修改派单规则 Replace the tenant's deadlines per call type (subdistrict admins); If-Match: the version read

    Send all three call types (service, tackling, emergency) with their minutes and assistant places, and
    matching_targets. Version "0" is the shipped defaults, until the tenant saves its own. Applies to calls
    blown afterwards."""
    header = request.headers.get("If-Match")
    version = 0 if header is not None and header.strip() == '"0"' else if_match_version(header)
    msg = from_json(json_body(), pb.DispatchRules, drop=RULES_READ_ONLY)
    msg.version = version
    with tenant_call(tenant, conditional=True):
        rules = clients().dispatch.PutDispatchRules(msg)
    return message(rules)


# ---------------------------------------------------------------- the OpenAPI description (gateway/openapi.py)


@dataclass(frozen=True)
class Doc:
    """What a route takes and answers, for gateway/openapi.py (which adds the path, roles and errors)."""

    response: type[Message] | type[BaseModel] | None  # the answer's message or model; None: 204 without a body
    status: int = 200
    body: type[BaseModel] | type[Message] | None = None
    if_match: Literal["", "required", "optional"] = ""
    list_key: str = ""  # the answer is {list_key: [response...]} and, when paged, next_page_token
    paged: bool = True
    errors: tuple[int, ...] = ()
    headers: tuple[str, ...] = ()  # response headers: ETag, Location
    read_only: tuple[str, ...] = ()  # body fields the route ignores (as read)
    request_headers: tuple[tuple[str, str], ...] = ()  # (name, description) of request headers it reads


DOCS: dict[str, Doc] = {  # query parameters: the views' @query declarations
    "dispatch.list_whistles": Doc(pb.Whistle, list_key="whistles", errors=(400,)),
    "dispatch.blow_whistle": Doc(pb.Whistle, 201, BlowWhistleIn, errors=(400, 404, 409), headers=("ETag", "Location")),
    "dispatch.get_whistle": Doc(pb.Whistle, errors=(404,), headers=("ETag",)),
    "dispatch.report_in": Doc(
        pb.Whistle, 201, ReportInIn, if_match="optional", errors=(400, 404, 409, 412), headers=("ETag", "Location")
    ),
    "dispatch.list_tasks": Doc(pb.Task, list_key="tasks", errors=(400,)),
    "dispatch.list_overdue": Doc(pb.Task, list_key="tasks", errors=(400,)),
    "dispatch.list_overdue_district": Doc(pb.Task, list_key="tasks", errors=(400, 404, 429, 503)),
    "dispatch.my_tasks": Doc(pb.Task, list_key="tasks", errors=(400,)),
    "dispatch.get_task": Doc(pb.Task, errors=(404,), headers=("ETag",)),
    "dispatch.claim_task": Doc(pb.Task, 201, ClaimIn, errors=(400, 404, 409), headers=("ETag", "Location")),
    "dispatch.rank_candidates": Doc(pb.RankCandidatesResponse, errors=(400, 404)),
    "dispatch.assign_task": Doc(
        pb.Task, body=AssignIn, if_match="required", errors=(400, 404, 409, 412, 428), headers=("ETag",)
    ),
    "dispatch.respond_to_assignment": Doc(
        pb.Task,
        body=AssignmentResponseIn,
        if_match="required",
        errors=(400, 403, 404, 409, 412, 428),
        headers=("ETag",),
    ),
    "dispatch.transition_task": Doc(
        pb.Task, body=TransitionIn, if_match="required", errors=(400, 404, 409, 412, 428), headers=("ETag",)
    ),
    "dispatch.get_rules": Doc(pb.DispatchRules, headers=("ETag",)),
    "dispatch.put_rules": Doc(
        pb.DispatchRules,
        body=pb.DispatchRules,
        if_match="required",
        errors=(400, 409, 412, 428),
        headers=("ETag",),
        read_only=RULES_READ_ONLY,
    ),
}
