"""评单 for the portals: residents follow, rate and reject with their follow-up code, staff read the ratings and
record unit ratings -> hongling.evaluation.v1.RatingService.

    GET    issues/{id}/follow                   the reporter follows the issue (status, task progress, what it may do)
    POST   issues/{id}/rating                   {score 1..5, comment} once, after verification, within the window
    POST   issues/{id}/result-rejection         {reason}: the verified result is rejected, the task reopened
    GET    evaluation/issue-ratings             residents' ratings and rejections, newest first (staff)
    POST   evaluation/unit-ratings              {unit_id, score, comment, quarter, rater_person_id} (staff, members)
    GET    evaluation/unit-ratings              unit ratings by community, unit, quarter (staff)
    GET    evaluation/rating-settings           the tenant's windows (staff)
    PUT    evaluation/rating-settings           set them (subdistrict admins; If-Match optional)

The reporter is known by the follow-up code (查询码), sent in the header X-Follow-Code (never in the URL, so it
is in no access log or browser history), or as the logged-in resident who reported the issue (no header).
Code checks are limited per client address (HONGLING_RATE_FOLLOW_PER_MINUTE, gateway/ratelimit.py) besides
the per-address and per-caller limits every route has. Answers carry Cache-Control: no-store.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from hongling.evaluation.v1 import ratings_pb2 as pb
from hongling.evaluation.v1 import ratings_pb2_grpc as pb_grpc
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from gateway.app import json_body
from gateway.calls import tenant_call
from gateway.community import list_filter
from gateway.errors import ApiError
from gateway.query import PAGE_TOKEN, args, page_size, quarter, query, text
from gateway.routes_dispatch import DOCS, Doc, message, optional_version, page, parse

bp = Blueprint("ratings", __name__)
ISSUE = "/api/v1/tenants/<tenant>/issues/<issue_id>"
EVALUATION = "/api/v1/tenants/<tenant>/evaluation"
PAGE_MAX, PAGE_DEFAULT = 100, 20
CODE_HEADER = "X-Follow-Code"
CODE_MAX = 40
COMMUNITY = text("community_id", "社区 Community")
QUARTER = quarter("quarter", "季度 Quarter (Asia/Shanghai), e.g. 2026Q4")
FOLLOW_CODE_DOC = (
    CODE_HEADER,
    "查询码 The follow-up code the report's answer gave (e.g. ABCDE-FGHJK-MNPQR-STVWX); leave it out as the "
    "logged-in resident who reported the issue",
)


def stub() -> pb_grpc.RatingServiceStub:
    return pb_grpc.RatingServiceStub(current_app.extensions["hongling.clients"].channels["evaluation"])


def follow_code() -> str:
    """The code from its header ("" when none), after the per-address limit on code checks."""
    raw = request.headers.get(CODE_HEADER, "").strip()
    if not raw:
        return ""
    if len(raw) > CODE_MAX or not raw.isascii() or not raw.isprintable():
        raise ApiError(
            400, "invalid_argument", f"查询码格式不正确 ({CODE_HEADER} is not a follow-up code)", field=CODE_HEADER
        )
    current_app.extensions["hongling.ratelimits"].check_follow()
    return raw


def private(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---------------------------------------------------------------- bodies


class RatingIn(BaseModel):
    """评价: 1 (很不满意) .. 5 (很满意), an optional comment (shown to the community's staff, never published)."""

    model_config = ConfigDict(extra="forbid")
    score: StrictInt = Field(ge=1, le=5)
    comment: StrictStr = Field("", max_length=500)


class RejectionIn(BaseModel):
    """不满意退回: why the verified result is not accepted (required)."""

    model_config = ConfigDict(extra="forbid")
    reason: StrictStr = Field(min_length=1, max_length=500)


class UnitRatingIn(BaseModel):
    """A member unit's rating for a quarter: by an alliance member as itself, or recorded by a community worker
    for a resident representative (rater_person_id)."""

    model_config = ConfigDict(extra="forbid")
    unit_id: StrictStr
    score: StrictInt = Field(ge=1, le=5)
    comment: StrictStr = Field("", max_length=500)
    quarter: StrictStr = Field("", description='"2026Q4"; empty: the current quarter (Asia/Shanghai)')
    rater_person_id: StrictStr = ""


class RatingSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating_window_days: StrictInt = Field(ge=1, le=365)
    rejection_window_days: StrictInt = Field(ge=1, le=90)


# ---------------------------------------------------------------- the reporter


@bp.get(f"{ISSUE}/follow")
def follow_issue(tenant: str, issue_id: str) -> Response:
    """跟踪事项 The reporter follows the issue: its status, its task's progress, and whether it may rate or reject"""
    code = follow_code()
    with tenant_call(tenant):
        found = stub().FollowIssue(pb.FollowIssueRequest(issue_id=issue_id, follow_code=code))
    return private(message(found, etag=False))


@bp.post(f"{ISSUE}/rating")
def rate_issue(tenant: str, issue_id: str) -> Response:
    """评价事项 The reporter rates the verified work, 1..5 with a comment, once (IssueRated)"""
    code = follow_code()
    data: RatingIn = parse(RatingIn, json_body())
    with tenant_call(tenant):
        found = stub().RateIssue(
            pb.RateIssueRequest(issue_id=issue_id, follow_code=code, score=data.score, comment=data.comment)
        )
    return private(message(found, 201, etag=False))


@bp.post(f"{ISSUE}/result-rejection")
def reject_result(tenant: str, issue_id: str) -> Response:
    """不满意退回 The reporter rejects the verified result with a reason: the task is reopened (counted)"""
    code = follow_code()
    data: RejectionIn = parse(RejectionIn, json_body())
    with tenant_call(tenant):
        found = stub().RejectResult(pb.RejectResultRequest(issue_id=issue_id, follow_code=code, reason=data.reason))
    return private(message(found, 201, etag=False))


# ---------------------------------------------------------------- staff


@bp.get(f"{EVALUATION}/issue-ratings")
@query(
    COMMUNITY,
    text("kind", "种类 rating (评价) or rejection (退回); absent: both", enum=("rating", "rejection")),
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_issue_ratings(tenant: str) -> Response:
    """居民评价列表 Residents' ratings and rejections of verified work, newest first"""
    req = pb.ListIssueRatingsRequest(**args())
    req.community_id = list_filter(req.community_id)
    with tenant_call(tenant):
        resp = stub().ListIssueRatings(req)
    return page("rows", list(resp.rows), resp.next_page_token)


@bp.post(f"{EVALUATION}/unit-ratings")
def rate_unit(tenant: str) -> Response:
    """成员单位评价 Rate a member unit for a quarter, once per rater (UnitRated)"""
    data: UnitRatingIn = parse(UnitRatingIn, json_body())
    req = pb.RateUnitRequest(
        unit_id=data.unit_id.strip(),
        score=data.score,
        comment=data.comment,
        quarter=data.quarter.strip(),
        rater_person_id=data.rater_person_id.strip(),
    )
    with tenant_call(tenant):
        return message(stub().RateUnit(req), 201, etag=False)


@bp.get(f"{EVALUATION}/unit-ratings")
@query(
    COMMUNITY,
    text("unit_id", "成员单位 Member unit"),
    QUARTER,
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_unit_ratings(tenant: str) -> Response:
    """成员单位评价列表 Unit ratings of a community, a unit or a quarter, newest first"""
    req = pb.ListUnitRatingsRequest(**args())
    req.community_id = list_filter(req.community_id)
    with tenant_call(tenant):
        resp = stub().ListUnitRatings(req)
    return page("ratings", list(resp.ratings), resp.next_page_token)


@bp.get(f"{EVALUATION}/rating-settings")
def get_rating_settings(tenant: str) -> Response:
    """评价设置 The tenant's windows: days after verification to rate (30) and to reject (7); ETag once set"""
    with tenant_call(tenant):
        found = stub().GetRatingSettings(pb.GetRatingSettingsRequest())
    return message(found, etag=found.version > 0)  # the defaults, never stored, have no version to match


@bp.put(f"{EVALUATION}/rating-settings")
def put_rating_settings(tenant: str) -> Response:
    """修改评价设置 Set the tenant's windows (If-Match: the version read; the defaults are version 0)"""
    data: RatingSettingsIn = parse(RatingSettingsIn, json_body())
    version = optional_version()
    with tenant_call(tenant, conditional=True):
        found = stub().PutRatingSettings(
            pb.RatingSettings(
                rating_window_days=data.rating_window_days,
                rejection_window_days=data.rejection_window_days,
                version=version,
            )
        )
    return message(found)


DOCS.update(
    {
        "ratings.follow_issue": Doc(pb.IssueFollow, errors=(400, 403, 429), request_headers=(FOLLOW_CODE_DOC,)),
        "ratings.rate_issue": Doc(
            pb.IssueRating, 201, RatingIn, errors=(400, 403, 409, 429), request_headers=(FOLLOW_CODE_DOC,)
        ),
        "ratings.reject_result": Doc(
            pb.ResultRejection, 201, RejectionIn, errors=(400, 403, 409, 429), request_headers=(FOLLOW_CODE_DOC,)
        ),
        "ratings.list_issue_ratings": Doc(pb.IssueRatingRow, list_key="rows", errors=(400,)),
        "ratings.rate_unit": Doc(pb.UnitRating, 201, UnitRatingIn, errors=(400, 403, 409)),
        "ratings.list_unit_ratings": Doc(pb.UnitRating, list_key="ratings", errors=(400,)),
        "ratings.get_rating_settings": Doc(pb.RatingSettings, headers=("ETag",)),
        "ratings.put_rating_settings": Doc(
            pb.RatingSettings, body=RatingSettingsIn, if_match="optional", errors=(400, 409, 412), headers=("ETag",)
        ),
    }
)
