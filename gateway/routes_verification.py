"""验单 for the portals: /api/v1/tenants/<tenant>/evaluation/... -> hongling.evaluation.v1.VerificationService.

    GET    evaluation/verification-queue?community_id=&call_type=     待验单: a community's done tasks (staff)
    GET    evaluation/review-rounds?community_id=&status=open|closed  集中评议: a community's rounds, newest first
    POST   evaluation/review-rounds                                   convene one (done tasks, reviewers) -> 201
    GET    evaluation/review-rounds/{id}                              one round, its votes, its verdicts
    POST   evaluation/review-rounds/{id}/votes                        a reviewer's vote on a task -> 201
    POST   evaluation/review-rounds/{id}/close                        the convenor closes it: the verdicts
    GET    evaluation/onsite-checks?community_id=&task_id=            现场核验: checks, newest first
    POST   evaluation/onsite-checks                                   record one (JSON, or multipart with photos) -> 201
    GET    evaluation/onsite-checks/{id}                              one check (its place flag, its photos)
    GET    evaluation/onsite-checks/{id}/photos/{photo_id}            a photo
    GET|PUT evaluation/verification-rules                 (PUT If-Match) method, quorum, distance per call type

A verdict (a closed round's, a check's) is an event that dispatch applies: the task becomes verified, or is
sent back (rejected → reopened). A community worker works on its own community (another's round or check: 404,
a list or a new round naming another: 403); the evaluation service checks the same.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

from flask import Blueprint, Response, current_app, request
from hongling.evaluation.v1 import verification_pb2 as pb
from hongling.evaluation.v1 import verification_pb2_grpc as pb_grpc
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from gateway.app import json_body
from gateway.calls import tenant_call
from gateway.community import list_filter
from gateway.errors import ApiError
from gateway.protojson import StrictInt64, from_json
from gateway.query import PAGE_TOKEN, args, page_size, query, text
from gateway.routes_dispatch import DOCS, Doc, message, page, parse
from gateway.routes_org import content_disposition, if_match_version

bp = Blueprint("verification", __name__)
BASE = "/api/v1/tenants/<tenant>/evaluation"
QUEUE = f"{BASE}/verification-queue"
ROUNDS = f"{BASE}/review-rounds"
ROUND = f"{ROUNDS}/<round_id>"
CHECKS = f"{BASE}/onsite-checks"
CHECK = f"{CHECKS}/<check_id>"
RULES = f"{BASE}/verification-rules"
PAGE_MAX, PAGE_DEFAULT = 100, 20
COMMUNITY = text("community_id", "社区 Community")
RULES_READ_ONLY = ("version", "updated_at", "updated_by")
# Up to 5 photos of 5 MiB, base64 in JSON (4/3) or multipart.
CHECK_MAX_BYTES = 36 * 1024 * 1024


def stub() -> pb_grpc.VerificationServiceStub:
    return pb_grpc.VerificationServiceStub(current_app.extensions["hongling.clients"].channels["evaluation"])


# ---------------------------------------------------------------- bodies


class ReviewerIn(BaseModel):
    """A named reviewer: party_committee (社区党委), resident_representative (居民代表), alliance_member (联盟成员)."""

    model_config = ConfigDict(extra="forbid")
    id: StrictStr
    kind: Literal["party_committee", "resident_representative", "alliance_member"]
    name_zh: StrictStr = ""


class RoundIn(BaseModel):
    """A review round for done tasks of one community; quorum 0: the tenant's rule."""

    model_config = ConfigDict(extra="forbid")
    community_id: StrictStr
    title: StrictStr
    task_ids: list[StrictStr] = Field(min_length=1, max_length=50)
    reviewers: list[ReviewerIn] = Field(min_length=1, max_length=30)
    quorum: StrictInt = Field(0, ge=0, le=30)
    idempotency_key: StrictStr = ""


class VoteIn(BaseModel):
    """One reviewer's vote on one task: pass, or fail with a reason (staff name the reviewer they record for)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    task_id: StrictStr
    reviewer_id: StrictStr = ""
    passed: StrictBool = Field(alias="pass")
    reason: StrictStr = ""


class PhotoIn(BaseModel):
    """A photo in a JSON body (multipart bodies send files `photos` instead)."""

    model_config = ConfigDict(extra="forbid")
    filename: StrictStr = ""
    content_type: StrictStr
    content_base64: StrictStr


class CheckIn(BaseModel):
    """An on-site check: the place (lat, lon) where it was made, pass or fail (with a reason), notes, photos."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    task_id: StrictStr
    lat: StrictFloat | StrictInt64
    lon: StrictFloat | StrictInt64
    passed: StrictBool = Field(alias="pass")
    reason: StrictStr = ""
    notes: StrictStr = ""
    photos: list[PhotoIn] = Field(default_factory=list, max_length=5)
    idempotency_key: StrictStr = ""


def _photos(items: list[PhotoIn]) -> list[pb.PhotoUpload]:
    out = []
    for n, p in enumerate(items):
        try:
            content = base64.b64decode(p.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                400, "invalid_argument", "照片编码错误 (content_base64 is not base64)", field=f"photos[{n}]"
            ) from None
        out.append(pb.PhotoUpload(filename=p.filename, content_type=p.content_type, content=content))
    return out


def _check_body() -> tuple[dict[str, Any], list[pb.PhotoUpload]]:
    """The check (JSON body, or multipart: field `check` as JSON plus files `photos`) and the uploaded photos."""
    request.max_content_length = CHECK_MAX_BYTES
    if request.mimetype != "multipart/form-data":
        return json_body(), []
    raw = request.form.get("check")
    if raw is None:
        raise ApiError(400, "invalid_argument", "请在表单字段 check 中提交核验内容 (send the check)", field="check")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        raise ApiError(400, "invalid_argument", "表单字段 check 不是 JSON (check is not JSON)", field="check") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_argument", "表单字段 check 应为 JSON 对象 (check: an object)", field="check")
    files = [
        pb.PhotoUpload(filename=f.filename or "", content_type=f.mimetype or "", content=f.read())
        for f in request.files.getlist("photos")
    ]
    return body, files


def _round_url(tenant: str, round_id: str) -> str:
    return f"/api/v1/tenants/{tenant}/evaluation/review-rounds/{round_id}"


def _check_url(tenant: str, check_id: str) -> str:
    return f"/api/v1/tenants/{tenant}/evaluation/onsite-checks/{check_id}"


# ---------------------------------------------------------------- the queue


@bp.get(QUEUE)
@query(
    COMMUNITY,
    text("call_type", "集结号 service | tackling | emergency", enum=("service", "tackling", "emergency")),
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_queue(tenant: str) -> Response:
    """待验单 A community's done tasks awaiting verification, newest first, with the method their rule asks for"""
    req = pb.ListQueueRequest(**args())
    req.community_id = list_filter(req.community_id)
    with tenant_call(tenant):
        resp = stub().ListQueue(req)
    return page("items", list(resp.items), resp.next_page_token)


# ---------------------------------------------------------------- review rounds


@bp.get(ROUNDS)
@query(
    COMMUNITY,
    text("status", "状态 open (评议中) or closed (已结束)", enum=("open", "closed")),
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_rounds(tenant: str) -> Response:
    """集中评议列表 A community's review rounds, newest first, with their verdicts' counts"""
    req = pb.ListRoundsRequest(**args())
    req.community_id = list_filter(req.community_id)
    with tenant_call(tenant):
        resp = stub().ListRounds(req)
    return page("rounds", list(resp.rounds), resp.next_page_token)


@bp.post(ROUNDS)
def create_round(tenant: str) -> Response:
    """发起集中评议 Convene a review round for done tasks of the community, with named reviewers and a quorum"""
    data: RoundIn = parse(RoundIn, json_body())
    req = pb.CreateRoundRequest(
        community_id=data.community_id.strip(),
        title=data.title,
        task_ids=[t.strip() for t in data.task_ids],
        reviewers=[pb.ReviewerIn(id=r.id.strip(), kind=r.kind, name_zh=r.name_zh) for r in data.reviewers],
        quorum=data.quorum,
        idempotency_key=data.idempotency_key,
    )
    with tenant_call(tenant):
        found = stub().CreateRound(req)
    return message(found, 201, location=_round_url(tenant, found.id))


@bp.get(ROUND)
def get_round(tenant: str, round_id: str) -> Response:
    """查看集中评议 One review round: its reviewers, the votes cast, and once closed each task's verdict"""
    with tenant_call(tenant):
        return message(stub().GetRound(pb.GetRoundRequest(id=round_id)))


@bp.post(f"{ROUND}/votes")
def cast_vote(tenant: str, round_id: str) -> Response:
    """评议投票 A reviewer's vote on a task of an open round: pass, or fail with a reason (once per reviewer, task)"""
    data: VoteIn = parse(VoteIn, json_body())
    req = pb.CastVoteRequest(round_id=round_id, task_id=data.task_id.strip(), reviewer_id=data.reviewer_id.strip())
    setattr(req, "pass", data.passed)
    req.reason = data.reason
    with tenant_call(tenant):
        return message(stub().CastVote(req), 201)


@bp.post(f"{ROUND}/close")
def close_round(tenant: str, round_id: str) -> Response:
    """结束评议 The convenor closes the round: each task with a quorum gets its verdict (TaskVerified or
    TaskVerificationFailed, which dispatch applies); a task without one stays in the queue"""
    with tenant_call(tenant):
        return message(stub().CloseRound(pb.CloseRoundRequest(id=round_id)))


# ---------------------------------------------------------------- on-site checks


@bp.get(CHECKS)
@query(COMMUNITY, text("task_id", "任务 One task's checks"), page_size(PAGE_MAX, PAGE_DEFAULT), PAGE_TOKEN)
def list_checks(tenant: str) -> Response:
    """现场核验列表 A community's on-site checks (or a task's), newest first, with their place flags"""
    req = pb.ListChecksRequest(**args())
    req.community_id = list_filter(req.community_id)
    with tenant_call(tenant):
        resp = stub().ListChecks(req)
    return page("checks", list(resp.checks), resp.next_page_token)


@bp.post(CHECKS)
def record_check(tenant: str) -> Response:
    """现场核验 Record an on-site check of a done task: pass or fail is the verdict; a place farther than the
    tenant's distance from the issue is flagged

    JSON, or multipart/form-data with the check as JSON in the field `check` and photos as files `photos` (at
    most 5, 5 MiB each; JPEG, PNG, WebP)."""
    body, files = _check_body()
    data: CheckIn = parse(CheckIn, body)
    req = pb.RecordCheckRequest(
        task_id=data.task_id.strip(),
        notes=data.notes,
        lat=float(data.lat),
        lon=float(data.lon),
        reason=data.reason,
        idempotency_key=data.idempotency_key,
    )
    setattr(req, "pass", data.passed)
    req.photos.extend(_photos(data.photos))
    req.photos.extend(files)
    with tenant_call(tenant):
        found = stub().RecordCheck(req)
    return message(found, 201, location=_check_url(tenant, found.id))


@bp.get(CHECK)
def get_check(tenant: str, check_id: str) -> Response:
    """查看现场核验 One on-site check: notes, photos, the place and its distance from the issue, the verdict"""
    with tenant_call(tenant):
        return message(stub().GetCheck(pb.GetCheckRequest(id=check_id)))


@bp.get(f"{CHECK}/photos/<photo_id>")
def get_check_photo(tenant: str, check_id: str, photo_id: str) -> Response:
    """核验照片 A photo of an on-site check, as uploaded"""
    with tenant_call(tenant):
        found = stub().GetCheckPhoto(pb.GetCheckPhotoRequest(check_id=check_id, photo_id=photo_id))
    resp = Response(found.content, mimetype=found.photo.content_type)
    resp.headers["Content-Disposition"] = content_disposition(found.photo.filename, f"{photo_id}").replace(
        "attachment;", "inline;"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


# ---------------------------------------------------------------- rules


@bp.get(RULES)
def get_rules(tenant: str) -> Response:
    """验单规则 The tenant's verification method, quorum, decision rule and distance per call type; ETag"""
    with tenant_call(tenant):
        return message(stub().GetVerificationRules(pb.GetVerificationRulesRequest()))


@bp.put(RULES)
def put_rules(tenant: str) -> Response:
    """修改验单规则 Replace the tenant's verification rules (subdistrict admins); If-Match: the version read

    Send all three call types (service, tackling, emergency), each with method (review | onsite | either),
    quorum (1..30), decision (majority | two_thirds | unanimous) and distance_m (10..50000). Version "0" is the
    shipped defaults (emergency: onsite; tackling and service: review; quorum 3, majority, 200 m)."""
    header = request.headers.get("If-Match")
    version = 0 if header is not None and header.strip() == '"0"' else if_match_version(header)
    msg = from_json(json_body(), pb.VerificationRules, drop=RULES_READ_ONLY)
    msg.version = version
    with tenant_call(tenant, conditional=True):
        return message(stub().PutVerificationRules(msg))


E = "verification."
DOCS.update(
    {
        f"{E}list_queue": Doc(pb.QueueItem, list_key="items", errors=(400,)),
        f"{E}list_rounds": Doc(pb.RoundRow, list_key="rounds", errors=(400,)),
        f"{E}create_round": Doc(pb.ReviewRound, 201, RoundIn, errors=(400, 404, 409), headers=("ETag", "Location")),
        f"{E}get_round": Doc(pb.ReviewRound, errors=(404,), headers=("ETag",)),
        f"{E}cast_vote": Doc(pb.ReviewRound, 201, VoteIn, errors=(400, 404, 409), headers=("ETag",)),
        f"{E}close_round": Doc(pb.ReviewRound, errors=(404, 409), headers=("ETag",)),
        f"{E}list_checks": Doc(pb.CheckRow, list_key="checks", errors=(400,)),
        f"{E}record_check": Doc(
            pb.OnsiteCheck, 201, CheckIn, errors=(400, 404, 409, 413), headers=("ETag", "Location")
        ),
        f"{E}get_check": Doc(pb.OnsiteCheck, errors=(404,), headers=("ETag",)),
        f"{E}get_rules": Doc(pb.VerificationRules, headers=("ETag",)),
        f"{E}put_rules": Doc(
            pb.VerificationRules,
            body=pb.VerificationRules,
            if_match="required",
            errors=(400, 409, 412, 428),
            headers=("ETag",),
            read_only=RULES_READ_ONLY,
        ),
    }
)
