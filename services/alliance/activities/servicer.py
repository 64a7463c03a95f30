"""ActivityService: protobuf <-> the activities' commands and reads, nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from hongling.alliance.v1 import activities_pb2 as pb
from hongling.alliance.v1 import activities_pb2_grpc as pb_grpc
from hongling.alliance.v1 import posts_pb2

from services.alliance.activities import domain, handlers, readmodel
from services.alliance.activities.documents import ActivityDoc
from services.alliance.posts import domain as posts_domain
from services.alliance.posts.handlers import STAFF_ROLES, is_staff
from services.alliance.posts.servicer import _member_filter, _time, page_size, principal
from services.alliance.shared import ts, utcnow
from services.common import community
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.principal import Principal


def participant_pb(e: domain.Entry | Mapping[str, Any], position: int) -> pb.Participant:
    get = e.get if isinstance(e, Mapping) else lambda k: getattr(e, k, None)
    return pb.Participant(
        key=str(get("key") or ""),
        unit_id=str(get("unit_id") or ""),
        person_id=str(get("person_id") or ""),
        status=str(get("status") or ""),
        position=position,
        signed_up_at=ts(get("signed_up_at")),
        promoted_at=ts(get("promoted_at")),
        withdrawn_at=ts(get("withdrawn_at")),
        attended=bool(get("attended")),
        hours=float(get("hours") or 0.0),
        attended_at=ts(get("attended_at")),
        by=str(get("by") or ""),
        recorded_by=str(get("recorded_by") or ""),
    )


def activity_pb(doc: ActivityDoc, p: Principal) -> pb.Activity:
    entries = handlers.entries_of(doc)
    out = pb.Activity(
        id=doc.id,
        community_id=doc.community_id,
        title=doc.title,
        kind=doc.kind,
        description=doc.description or "",
        place=posts_pb2.Place(kind=doc.place.kind, id=doc.place.id, name=doc.place.name) if doc.place else None,
        starts_at=ts(doc.starts_at),
        ends_at=ts(doc.ends_at),
        capacity=int(doc.capacity),
        signup_deadline=ts(doc.signup_deadline),
        taken=domain.placed(entries),
        waiting=len(domain.waiting(entries)),
        attended=sum(1 for e in entries if e.attended),
        created_by=doc.created_by or "",
        created_at=ts(doc.created_at),
        version=int(doc.version or 1),
    )
    for e in entries:
        if handlers.visible(p, e):
            out.participants.append(participant_pb(e, domain.position(entries, e)))
    if p.role == "member":
        mine = [e for e in entries if handlers.visible(p, e) and e.status in domain.ACTIVE]
        if mine:
            out.mine.CopyFrom(participant_pb(mine[-1], domain.position(entries, mine[-1])))
    return out


def row_pb(r: Mapping[str, Any]) -> pb.Activity:
    return pb.Activity(
        id=r["id"],
        community_id=r["community_id"],
        title=r["title"],
        kind=r["kind"],
        place=posts_pb2.Place(name=r["place_name"]),
        starts_at=ts(r["starts_at"]),
        ends_at=ts(r["ends_at"]),
        capacity=int(r["capacity"]),
        signup_deadline=ts(r["signup_deadline"]),
        taken=int(r["taken"]),
        waiting=int(r["waiting"]),
        attended=int(r["attended"]),
        created_at=ts(r["created_at"]),
        version=int(r["version"]),
    )


def _reader(p: Principal) -> None:
    if p.role not in (*STAFF_ROLES, "member"):
        raise PermissionDenied(f"{p.role!r} may not read activities (无权查看)")


class ActivityServicer(pb_grpc.ActivityServiceServicer):
    def PublishActivity(self, request: pb.PublishActivityRequest, context: grpc.ServicerContext) -> pb.Activity:
        p = principal()
        place = posts_domain.place(request.place.kind, request.place.id, request.place.name)
        doc = handlers.publish(
            p,
            request.community_id,
            request.title,
            request.kind,
            request.description,
            place,
            _time(request.starts_at, "starts_at"),
            _time(request.ends_at, "ends_at"),
            request.capacity,
            _time(request.signup_deadline, "signup_deadline"),
        )
        return activity_pb(doc, p)

    def GetActivity(self, request: pb.GetActivityRequest, context: grpc.ServicerContext) -> pb.Activity:
        p = principal()
        _reader(p)
        return activity_pb(handlers.get(p, request.id), p)

    def ListActivities(
        self, request: pb.ListActivitiesRequest, context: grpc.ServicerContext
    ) -> pb.ListActivitiesResponse:
        p = principal()
        _reader(p)
        when = request.when or "upcoming"
        if when not in ("upcoming", "past"):
            raise InvalidArgument("when must be upcoming or past (时间范围有误)", field="when")
        rows, token = readmodel.list_activities(
            community.list_filter(request.community_id.strip(), p),
            when,
            page_size(request.page_size),
            request.page_token,
            utcnow(),
        )
        return pb.ListActivitiesResponse(activities=[row_pb(r) for r in rows], next_page_token=token)

    def SignUp(self, request: pb.SignUpRequest, context: grpc.ServicerContext) -> pb.Activity:
        p = principal()
        doc = handlers.sign_up(
            p, request.activity_id, request.participant.kind, request.participant.id, request.person_id
        )
        return activity_pb(doc, p)

    def Withdraw(self, request: pb.WithdrawRequest, context: grpc.ServicerContext) -> pb.Activity:
        p = principal()
        doc = handlers.withdraw(
            p, request.activity_id, request.participant.kind, request.participant.id, request.person_id
        )
        return activity_pb(doc, p)

    def RecordAttendance(self, request: pb.RecordAttendanceRequest, context: grpc.ServicerContext) -> pb.Activity:
        p = principal()
        if not is_staff(p) and request.hours:
            raise InvalidArgument("hours are given by the community worker (时长由社区工作者填写)", field="hours")
        doc = handlers.attend(
            p,
            request.activity_id,
            request.participant.kind,
            request.participant.id,
            request.person_id,
            request.hours,
        )
        return activity_pb(doc, p)

    def ListSignups(self, request: pb.ListSignupsRequest, context: grpc.ServicerContext) -> pb.ListSignupsResponse:
        p = principal()
        _reader(p)
        person_id, unit_id = _member_filter(p, request.person_id.strip(), request.unit_id.strip())
        cid = community.list_filter(request.community_id.strip(), p) if p.role != "member" else ""
        rows, token = readmodel.list_signups(person_id, unit_id, cid, page_size(request.page_size), request.page_token)
        return pb.ListSignupsResponse(
            signups=[
                pb.Signup(
                    activity_id=r["activity_id"],
                    title=r["title"],
                    kind=r["kind"],
                    community_id=r["community_id"],
                    starts_at=ts(r["starts_at"]),
                    ends_at=ts(r["ends_at"]),
                    participant=participant_pb(r, int(r["position"])),
                )
                for r in rows
            ],
            next_page_token=token,
        )


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_ActivityServiceServicer_to_server(ActivityServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["ActivityService"].full_name]
