"""Issue routes: /api/v1/tenants/<tenant>/issues (the walking skeleton of intake -> dispatch)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import grpc
from flask import Blueprint, Response, jsonify, request
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.dispatch.v1 import dispatch_pb2
from hongling.intake.v1 import intake_pb2
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.app import json_body
from gateway.calls import clients as _clients
from gateway.calls import tenant_call
from gateway.errors import ApiError

bp = Blueprint("issues", __name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
CHANNEL_NAMES_ZH = {
    "household_visit": "入户走访",
    "resident_report": "居民反映",
    "online": "线上接单",
    "grid_patrol": "网格巡查",
    "hotline_12345": "12345热线",
}


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    compound_id: str = ""


class CreateIssueIn(BaseModel):
    """Shapes and types only; the intake service owns the rules (lengths, channels, location)."""

    model_config = ConfigDict(extra="forbid")
    title: str
    description: str
    channel: str
    category: str = ""
    location: LocationIn
    idempotency_key: str = ""


def _time(ts: Timestamp) -> str:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=SHANGHAI).isoformat(timespec="seconds")


def issue_json(issue: intake_pb2.Issue) -> dict[str, Any]:
    loc = issue.location
    return {
        "id": issue.id,
        "tenant": issue.tenant,
        "title": issue.title,
        "description": issue.description,
        "channel": issue.channel,
        "channel_zh": CHANNEL_NAMES_ZH.get(issue.channel, issue.channel),
        "category": issue.category,
        "location": {
            "lat": loc.lat if loc.HasField("lat") else None,
            "lon": loc.lon if loc.HasField("lon") else None,
            "address": loc.address,
            "compound_id": loc.compound_id,
        },
        "status": issue.status,
        "created_at": _time(issue.created_at),
    }


def task_json(task: dispatch_pb2.Task) -> dict[str, Any]:
    return {"id": task.id, "issue_id": task.issue_id, "status": task.status, "created_at": _time(task.created_at)}


def _validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    kinds = {"missing": "is required (必填)", "extra_forbidden": "is not a known field"}
    message = f"{field} {kinds.get(err['type'], err['msg'])}"
    return ApiError(400, "invalid_argument", message, field=field)


@bp.post("/api/v1/tenants/<tenant>/issues")
def create_issue(tenant: str) -> tuple[Response, int]:
    body = json_body()
    try:
        data = CreateIssueIn.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    loc = data.location
    req = intake_pb2.CreateIssueRequest(
        title=data.title,
        description=data.description,
        channel=data.channel,
        category=data.category,
        location=common_pb2.Location(
            lat=loc.lat,
            lon=loc.lon,
            address=loc.address,
            compound_id=loc.compound_id,
        ),
        idempotency_key=data.idempotency_key,
    )
    with tenant_call(tenant):
        issue = _clients().intake.CreateIssue(req)
    resp = jsonify({"issue": issue_json(issue), "task": None})
    resp.headers["Location"] = f"/api/v1/tenants/{tenant}/issues/{issue.id}"
    return resp, 201


@bp.get("/api/v1/tenants/<tenant>/issues/<issue_id>")
def get_issue(tenant: str, issue_id: str) -> Response:
    with tenant_call(tenant):
        issue = _clients().intake.GetIssue(intake_pb2.GetIssueRequest(id=issue_id))
        try:
            task: dict[str, Any] | None = task_json(
                _clients().dispatch.GetTaskForIssue(dispatch_pb2.GetTaskForIssueRequest(issue_id=issue_id))
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            task = None
    return jsonify({"issue": issue_json(issue), "task": task})


@bp.get("/api/v1/tenants/<tenant>/issues")
def list_issues(tenant: str) -> Response:
    try:
        page_size = int(request.args.get("page_size", "20"))
    except ValueError:
        raise ApiError(400, "invalid_argument", "page_size must be a whole number", field="page_size") from None
    with tenant_call(tenant):
        resp = _clients().intake.ListIssues(
            intake_pb2.ListIssuesRequest(page_size=page_size, page_token=request.args.get("page_token", ""))
        )
    return jsonify({"issues": [issue_json(i) for i in resp.issues], "next_page_token": resp.next_page_token or None})
