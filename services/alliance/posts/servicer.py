"""PostService: protobuf <-> the posts' commands and reads, nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import grpc
from hongling.alliance.v1 import posts_pb2 as pb
from hongling.alliance.v1 import posts_pb2_grpc as pb_grpc

from services.alliance.posts import domain, handlers, readmodel
from services.alliance.posts.documents import PostClaimDoc, PostDoc, ShiftDoc
from services.alliance.posts.handlers import ts
from services.common import community
from services.common.context import current_principal
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.principal import Principal

PAGE_MAX, PAGE_DEFAULT = 200, 50


def principal() -> Principal:
    p = current_principal.get()
    assert p is not None  # the interceptor refuses calls without one
    return p


def page_size(n: int) -> int:
    if n < 0 or n > PAGE_MAX:
        raise InvalidArgument(f"page_size must be 0..{PAGE_MAX} (每页条数有误)", field="page_size")
    return n or PAGE_DEFAULT


def _time(msg: Any, field: str) -> datetime | None:
    return msg.ToDatetime(tzinfo=domain.UTC) if msg.seconds or msg.nanos else None


def new_shifts(shifts: Any, pattern: pb.WeeklyPattern | None) -> list[domain.NewShift]:
    now = handlers.utcnow()
    out = [
        domain.shift(_time(s.starts_at, "starts_at"), _time(s.ends_at, "ends_at"), s.capacity, now, f"shifts[{n}]")
        for n, s in enumerate(shifts)
    ]
    if pattern is not None and (pattern.weekdays or pattern.start_time or pattern.weeks):
        out += domain.weekly(
            domain.Pattern(
                list(pattern.weekdays),
                pattern.start_time,
                pattern.end_time,
                pattern.capacity,
                pattern.weeks,
                pattern.from_date,
            ),
            now,
        )
    return out


def shift_pb(s: ShiftDoc | Mapping[str, Any], taken: int) -> pb.Shift:
    get = s.get if isinstance(s, Mapping) else lambda k: getattr(s, k)
    cap = int(get("capacity") or 0)
    return pb.Shift(
        id=str(get("id")),
        starts_at=ts(get("starts_at")),
        ends_at=ts(get("ends_at")),
        capacity=cap,
        taken=taken,
        open=max(0, cap - taken),
    )


def post_pb(doc: PostDoc) -> pb.Post:
    held = handlers.taken(doc.shifts)
    return pb.Post(
        id=doc.id,
        community_id=doc.community_id,
        name=doc.name,
        description=doc.description or "",
        place=pb.Place(kind=doc.place.kind, id=doc.place.id, name=doc.place.name) if doc.place else None,
        shifts=[shift_pb(s, held.get(s.id, 0)) for s in sorted(doc.shifts, key=lambda s: (s.starts_at, s.id))],
        created_by=doc.created_by or "",
        created_at=ts(doc.created_at),
        version=int(doc.version or 1),
    )


CLAIM_TEXT = ("id", "post_id", "post_name", "shift_id", "community_id", "unit_id", "person_id", "status", "by")
CLAIM_TIMES = ("shift_starts_at", "shift_ends_at", "claimed_at", "checked_in_at", "released_at", "missed_at")


def claim_pb(c: PostClaimDoc | Mapping[str, Any]) -> pb.PostClaim:
    get = c.get if isinstance(c, Mapping) else lambda k: getattr(c, k, None)
    fields: dict[str, Any] = {k: str(get(k) or "") for k in CLAIM_TEXT}
    fields.update({k: ts(get(k)) for k in CLAIM_TIMES})
    return pb.PostClaim(
        **fields,
        late=bool(get("late")),
        hours=float(get("hours") or 0.0),
        checked_in_by=str(get("checked_in_by") or ""),
        version=int(get("version") or 1),
    )


def _member_filter(p: Principal, person_id: str, unit_id: str) -> tuple[str, str]:
    """A member lists only its own claims; staff any person's or unit's."""
    if p.role != "member":
        return person_id, unit_id
    if p.responder is None:
        raise PermissionDenied("this member credential is bound to no helper (未绑定成员单位或个人)")
    kind, rid = p.responder
    return (rid, "") if kind == "person" else ("", rid)


class PostServicer(pb_grpc.PostServiceServicer):
    def CreatePost(self, request: pb.CreatePostRequest, context: grpc.ServicerContext) -> pb.Post:
        place = domain.place(request.place.kind, request.place.id, request.place.name)
        doc = handlers.create_post(
            principal(),
            request.community_id,
            request.name,
            request.description,
            place,
            new_shifts(request.shifts, request.pattern if request.HasField("pattern") else None),
        )
        return post_pb(doc)

    def GetPost(self, request: pb.GetPostRequest, context: grpc.ServicerContext) -> pb.Post:
        return post_pb(handlers.get_post(principal(), request.id))

    def AddShifts(self, request: pb.AddShiftsRequest, context: grpc.ServicerContext) -> pb.Post:
        shifts = new_shifts(request.shifts, request.pattern if request.HasField("pattern") else None)
        return post_pb(handlers.add_shifts(principal(), request.post_id, shifts))

    def ListPosts(self, request: pb.ListPostsRequest, context: grpc.ServicerContext) -> pb.ListPostsResponse:
        p = principal()
        if p.role not in (*handlers.STAFF_ROLES, "member"):
            raise PermissionDenied(f"{p.role!r} may not read posts (无权查看)")
        weeks = request.weeks or 4
        if not 1 <= weeks <= domain.MAX_WEEKS:
            raise InvalidArgument(f"weeks must be 1..{domain.MAX_WEEKS} (周数有误)", field="weeks")
        rows, token = readmodel.list_posts(
            community.list_filter(request.community_id.strip(), p),
            page_size(request.page_size),
            request.page_token,
            weeks,
            handlers.utcnow(),
        )
        out = pb.ListPostsResponse(next_page_token=token)
        for r in rows:
            out.posts.append(
                pb.Post(
                    id=r["id"],
                    community_id=r["community_id"],
                    name=r["name"],
                    description=r["description"],
                    place=pb.Place(kind=r["place_kind"], id=r["place_id"], name=r["place_name"]),
                    shifts=[shift_pb(s, int(s["taken"])) for s in r["shifts"]],
                    created_by=r["created_by"],
                    created_at=ts(r["created_at"]),
                    version=int(r["version"]),
                )
            )
        return out

    def ClaimShift(self, request: pb.ClaimShiftRequest, context: grpc.ServicerContext) -> pb.PostClaim:
        doc = handlers.claim_shift(
            principal(), request.shift_id, request.claimant.kind, request.claimant.id, request.person_id
        )
        return claim_pb(doc)

    def ReleaseClaim(self, request: pb.ReleaseClaimRequest, context: grpc.ServicerContext) -> pb.PostClaim:
        return claim_pb(handlers.release(principal(), request.claim_id))

    def CheckIn(self, request: pb.CheckInRequest, context: grpc.ServicerContext) -> pb.PostClaim:
        return claim_pb(handlers.check_in(principal(), request.claim_id))

    def GetShiftRoster(self, request: pb.GetShiftRosterRequest, context: grpc.ServicerContext) -> pb.ShiftRoster:
        p = principal()
        handlers._staff_only(p)
        post, shift = handlers.find_shift(p, request.shift_id)
        held = handlers.taken([shift])
        return pb.ShiftRoster(
            post_id=post.id,
            post_name=post.name,
            shift=shift_pb(shift, held.get(shift.id, 0)),
            claims=[claim_pb(r) for r in readmodel.roster(shift.id)],
        )

    def ListClaims(self, request: pb.ListClaimsRequest, context: grpc.ServicerContext) -> pb.ListClaimsResponse:
        p = principal()
        person_id, unit_id = _member_filter(p, request.person_id.strip(), request.unit_id.strip())
        if request.status and request.status not in (domain.CLAIMED, domain.RELEASED, domain.SERVED, domain.MISSED):
            raise InvalidArgument("status must be claimed, released, served or missed (状态有误)", field="status")
        cid = community.list_filter(request.community_id.strip(), p) if p.role != "member" else ""
        rows, token = readmodel.list_claims(
            person_id, unit_id, cid, request.status, page_size(request.page_size), request.page_token
        )
        return pb.ListClaimsResponse(claims=[claim_pb(r) for r in rows], next_page_token=token)

    def GetFillRate(self, request: pb.GetFillRateRequest, context: grpc.ServicerContext) -> pb.FillRate:
        p = principal()
        handlers._staff_only(p)
        back, ahead = request.weeks_back or 4, request.weeks_ahead or 4
        if not 0 <= back <= 26:
            raise InvalidArgument("weeks_back must be 0..26 (周数有误)", field="weeks_back")
        if not 0 <= ahead <= domain.MAX_WEEKS:
            raise InvalidArgument(f"weeks_ahead must be 0..{domain.MAX_WEEKS} (周数有误)", field="weeks_ahead")
        rows = readmodel.fill_rate(
            community.list_filter(request.community_id.strip(), p), back, ahead, handlers.utcnow()
        )
        return pb.FillRate(weeks=[pb.WeekFill(**r) for r in rows])


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_PostServiceServicer_to_server(PostServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["PostService"].full_name]
