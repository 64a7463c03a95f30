"""Standing posts (认领岗位) for the portals: /api/v1/tenants/<tenant>/alliance/... -> hongling.alliance.v1.PostService.

    GET    alliance/posts?community_id=&weeks=      a community's posts with upcoming shifts and open places
    POST   alliance/posts                            define a post (one-off shifts and/or a weekly pattern) -> 201
    GET    alliance/posts/{id}                       one post, every shift with places taken (exact)
    POST   alliance/posts/{id}/shifts                more shifts
    POST   alliance/shifts/{id}/claims               认领 a place -> 201 (the last place: one 201, the rest 409)
    GET    alliance/shifts/{id}/roster               who claimed, checked in, released, missed (staff)
    POST   alliance/post-claims/{id}/release         give the place back before the shift
    POST   alliance/post-claims/{id}/check-in        签到 during the shift (member) or confirm (staff)
    GET    alliance/post-claims?person_id=&unit_id=&community_id=&status=   claims, served and missed shifts
    GET    alliance/post-stats?community_id=&weeks_back=&weeks_ahead=       places offered and taken per week

Members claim, release and check in as the helper their credential is bound to (the service refuses another);
staff record on someone's behalf. A community worker manages its own community's posts: another community's
post, shift or claim is 404 as a missing one, a list naming another community 403.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from google.protobuf.message import Message
from hongling.alliance.v1 import posts_pb2 as pb
from hongling.alliance.v1 import posts_pb2_grpc as pb_grpc

from gateway.app import json_body
from gateway.calls import clients, tenant_call
from gateway.community import list_filter
from gateway.protojson import from_json, to_json
from gateway.query import PAGE_TOKEN, args, integer, page_size, query, text
from gateway.routes_dispatch import DOCS, Doc

bp = Blueprint("alliance_posts", __name__)
BASE = "/api/v1/tenants/<tenant>/alliance"
PAGE_MAX, PAGE_DEFAULT = 200, 50
COMMUNITY = text("community_id", "社区 Community")
CLAIM_STATUSES = ("claimed", "released", "served", "missed")


def posts() -> pb_grpc.PostServiceStub:
    return pb_grpc.PostServiceStub(clients().channels["alliance"])


def answer(msg: Message, status: int = 200, location: str = "") -> Response:
    resp = jsonify(to_json(msg))
    resp.status_code = status
    if location:
        resp.headers["Location"] = location
    return resp


def page(key: str, items: list[Message], token: str) -> Response:
    return jsonify({key: [to_json(m) for m in items], "next_page_token": token or None})


def body_of(cls: type[Any], **ids: str) -> Any:
    """The request's JSON as the message, the path's ids set (a body naming them is ignored)."""
    data = {k: v for k, v in json_body().items() if k not in ids}
    msg = from_json(data, cls)
    for k, v in ids.items():
        setattr(msg, k, v)
    return msg


@bp.get(f"{BASE}/posts")
@query(
    COMMUNITY,
    integer("weeks", "周数 Upcoming shifts within this many weeks, 1..12; 0 or absent: 4", lo=0, hi=12, default=0),
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_posts(tenant: str) -> Response:
    """岗位列表 A community's posts, newest first, each with its upcoming shifts and their open places"""
    q = args()
    req = pb.ListPostsRequest(
        community_id=list_filter(q["community_id"]),
        weeks=q["weeks"],
        page_size=q["page_size"],
        page_token=q["page_token"],
    )
    with tenant_call(tenant):
        resp = posts().ListPosts(req)
    return page("posts", list(resp.posts), resp.next_page_token)


@bp.post(f"{BASE}/posts")
def create_post(tenant: str) -> Response:
    """设岗 Define a post: name, place, one-off shifts and/or a weekly pattern for the coming weeks

    A community worker defines posts of its own community (community_id may be left out). Each shift: starts_at,
    ends_at (≤ 24 h), capacity 1..500. A pattern: weekdays (1 = Monday … 7), start_time and end_time (HH:MM,
    Asia/Shanghai), capacity, weeks 1..12, from_date (YYYY-MM-DD; absent: today)."""
    req = body_of(pb.CreatePostRequest)
    with tenant_call(tenant):
        post = posts().CreatePost(req)
    return answer(post, 201, f"/api/v1/tenants/{tenant}/alliance/posts/{post.id}")


@bp.get(f"{BASE}/posts/<post_id>")
def get_post(tenant: str, post_id: str) -> Response:
    """查看岗位 One post with every shift and its places taken (exact, read from the write side)"""
    with tenant_call(tenant):
        return answer(posts().GetPost(pb.GetPostRequest(id=post_id)))


@bp.post(f"{BASE}/posts/<post_id>/shifts")
def add_shifts(tenant: str, post_id: str) -> Response:
    """加班次 More shifts for a post: one-off shifts and/or a weekly pattern (as when defining it)"""
    req = body_of(pb.AddShiftsRequest, post_id=post_id)
    with tenant_call(tenant):
        return answer(posts().AddShifts(req))


@bp.post(f"{BASE}/shifts/<shift_id>/claims")
def claim_shift(tenant: str, shift_id: str) -> Response:
    """认领岗位 Claim a place on a shift

    A member claims as itself (a unit names `person_id`, who attends for it); staff name the `claimant`
    {kind: member_unit | person, id} (and `person_id` for a unit). Of claimants racing for the last place one
    gets 201, the others 409 (已满 full); a second claim of the same person is 409 (already_claimed)."""
    req = body_of(pb.ClaimShiftRequest, shift_id=shift_id)
    with tenant_call(tenant):
        claim = posts().ClaimShift(req)
    return answer(claim, 201)


@bp.get(f"{BASE}/shifts/<shift_id>/roster")
def shift_roster(tenant: str, shift_id: str) -> Response:
    """班次名单 A shift's roster: every claim (released ones too) with check-ins, lateness and hours"""
    with tenant_call(tenant):
        return answer(posts().GetShiftRoster(pb.GetShiftRosterRequest(shift_id=shift_id)))


@bp.post(f"{BASE}/post-claims/<claim_id>/release")
def release_claim(tenant: str, claim_id: str) -> Response:
    """取消认领 Give a claimed place back before the shift starts (a later claimant can take it)"""
    with tenant_call(tenant):
        return answer(posts().ReleaseClaim(pb.ReleaseClaimRequest(claim_id=claim_id)))


@bp.post(f"{BASE}/post-claims/<claim_id>/check-in")
def check_in(tenant: str, claim_id: str) -> Response:
    """上岗签到 Check in for a claimed shift (from 30 minutes before its start to its end), or confirm as staff

    After the start + 10 minutes the check-in is late. Served hours are the shift's length (ShiftServed)."""
    with tenant_call(tenant):
        return answer(posts().CheckIn(pb.CheckInRequest(claim_id=claim_id)))


@bp.get(f"{BASE}/post-claims")
@query(
    text("person_id", "人员 A person's claims"),
    text("unit_id", "成员单位 A unit's claims"),
    COMMUNITY,
    text("status", "状态 Claim status", enum=CLAIM_STATUSES),
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_claims(tenant: str) -> Response:
    """认领记录 Claims, latest shift first: a person's or unit's claims and served / missed shifts

    A member sees only its own (whatever it names)."""
    q = args()
    req = pb.ListClaimsRequest(**{**q, "community_id": list_filter(q["community_id"])})
    with tenant_call(tenant):
        resp = posts().ListClaims(req)
    return page("claims", list(resp.claims), resp.next_page_token)


@bp.get(f"{BASE}/post-stats")
@query(
    COMMUNITY,
    integer("weeks_back", "过去周数 Weeks before this one, 0..26; 0 or absent: 4", lo=0, hi=26, default=0),
    integer("weeks_ahead", "未来周数 Weeks after this one, 0..12; 0 or absent: 4", lo=0, hi=12, default=0),
)
def fill_rate(tenant: str) -> Response:
    """岗位认领率 Places offered and taken per local week (Monday, Asia/Shanghai), served and missed"""
    q = args()
    req = pb.GetFillRateRequest(
        community_id=list_filter(q["community_id"]), weeks_back=q["weeks_back"], weeks_ahead=q["weeks_ahead"]
    )
    with tenant_call(tenant):
        return answer(posts().GetFillRate(req))


DOCS.update(
    {
        "alliance_posts.list_posts": Doc(pb.Post, list_key="posts", errors=(400,)),
        "alliance_posts.create_post": Doc(pb.Post, 201, pb.CreatePostRequest, errors=(400,), headers=("Location",)),
        "alliance_posts.get_post": Doc(pb.Post, errors=(404,)),
        "alliance_posts.add_shifts": Doc(pb.Post, body=pb.AddShiftsRequest, errors=(400, 404, 409)),
        "alliance_posts.claim_shift": Doc(pb.PostClaim, 201, pb.ClaimShiftRequest, errors=(400, 404, 409)),
        "alliance_posts.shift_roster": Doc(pb.ShiftRoster, errors=(404,)),
        "alliance_posts.release_claim": Doc(pb.PostClaim, errors=(404, 409)),
        "alliance_posts.check_in": Doc(pb.PostClaim, errors=(404, 409)),
        "alliance_posts.list_claims": Doc(pb.PostClaim, list_key="claims", errors=(400,)),
        "alliance_posts.fill_rate": Doc(pb.FillRate, errors=(400,)),
    }
)
