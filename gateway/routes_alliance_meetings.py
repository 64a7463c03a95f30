"""Joint meetings for the portals: /api/v1/tenants/<tenant>/alliance/meetings... -> hongling.alliance.v1.MeetingService.

    GET    alliance/meetings?community_id=&when=upcoming|past      a community's meetings, newest first (staff)
    POST   alliance/meetings                                       schedule one -> 201 (staff)
    GET    alliance/meetings/hot-topics?community_id=&days=        每月一题: categories and grids with most issues
    GET    alliance/meetings/attendance?unit_id=|person_id=        a unit's or person's attendance history
    GET    alliance/meetings/{id}                                  one meeting, its action items' issue/task status
    POST   alliance/meetings/{id}/cancel                           {reason} before it starts
    POST   alliance/meetings/{id}/agenda                           add an item (an open issue, a hot topic, other)
    POST   alliance/meetings/{id}/proposals                        a member proposes an item -> 201
    POST   alliance/meetings/{id}/proposals/{item_id}/accept       staff put it on the agenda
    POST   alliance/meetings/{id}/check-in                         a member checks in as itself
    POST   alliance/meetings/{id}/attendance                       staff record anyone's attendance
    POST   alliance/meetings/{id}/agenda/{item_id}/decision        agreed | rejected | deferred, votes
    POST   alliance/meetings/{id}/agenda/{item_id}/actions         an action item -> an issue in intake -> 201
    POST   alliance/meetings/{id}/close                            end it now: the rest recorded absent
    GET    alliance/meetings/{id}/minutes.docx                     the minutes to print and sign

A community worker works on its own community's meetings (another's: 404, a list or a new meeting naming
another: 403); the alliance service checks the same. Members act as the helper their credential is bound to.
"""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, current_app
from hongling.alliance.v1 import meetings_pb2 as pb
from hongling.alliance.v1 import meetings_pb2_grpc as pb_grpc
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from gateway.app import json_body
from gateway.calls import tenant_call
from gateway.community import list_filter
from gateway.query import PAGE_TOKEN, args, integer, page_size, parse_time, query, text
from gateway.routes_dispatch import DOCS, Doc, message, page, parse
from gateway.routes_org import content_disposition

bp = Blueprint("alliance_meetings", __name__)
MEETINGS = "/api/v1/tenants/<tenant>/alliance/meetings"
ONE = f"{MEETINGS}/<meeting_id>"
PAGE_MAX, PAGE_DEFAULT = 100, 20
COMMUNITY = text("community_id", "社区 Community")


def stub() -> pb_grpc.MeetingServiceStub:
    return pb_grpc.MeetingServiceStub(current_app.extensions["hongling.clients"].channels["alliance"])


# ---------------------------------------------------------------- bodies


class InviteeIn(BaseModel):
    """An invited member unit (member_unit) or person (person) of the community."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["member_unit", "person"]
    id: StrictStr


class AgendaItemIn(BaseModel):
    """An agenda item: an open issue (source issue, issue_id; its title is kept), a hot topic, or other."""

    model_config = ConfigDict(extra="forbid")
    title: StrictStr = ""
    source: Literal["issue", "hot_topic", "other"] = "other"
    issue_id: StrictStr = ""
    note: StrictStr = ""


class ScheduleIn(BaseModel):
    """A meeting: at a grid station of the community (station_id) or online (online true, online_link https)."""

    model_config = ConfigDict(extra="forbid")
    community_id: StrictStr
    title: StrictStr
    starts_at: StrictStr = Field(description="RFC 3339; without an offset Asia/Shanghai")
    ends_at: StrictStr = Field("", description="RFC 3339; empty: the start + 3 h")
    station_id: StrictStr = ""
    online: StrictBool = False
    online_link: StrictStr = ""
    invitees: list[InviteeIn] = Field(default_factory=list, max_length=200)
    agenda: list[AgendaItemIn] = Field(default_factory=list, max_length=30)
    idempotency_key: StrictStr = ""


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: StrictStr


class ProposeIn(BaseModel):
    """A member's proposal for an upcoming meeting of its community."""

    model_config = ConfigDict(extra="forbid")
    title: StrictStr
    note: StrictStr = ""


class CheckInIn(BaseModel):
    """A member unit's check-in may name the person who attends for it."""

    model_config = ConfigDict(extra="forbid")
    person_id: StrictStr = ""


class AttendanceIn(BaseModel):
    """An invited unit (unit_id, and person_id who attended for it) or person (person_id)."""

    model_config = ConfigDict(extra="forbid")
    unit_id: StrictStr = ""
    person_id: StrictStr = ""
    status: Literal["on_time", "late", "excused", "absent"]


class DecisionIn(BaseModel):
    """agreed | rejected | deferred; votes where voted (agreed needs more for than against)."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["agreed", "rejected", "deferred"]
    voted: StrictBool = False
    votes_for: StrictInt = Field(0, ge=0)
    votes_against: StrictInt = Field(0, ge=0)
    votes_abstain: StrictInt = Field(0, ge=0)
    note: StrictStr = ""


class ActionIn(BaseModel):
    """An action item of an agreed decision: an issue in intake, at compound_id or the meeting's grid station."""

    model_config = ConfigDict(extra="forbid")
    title: StrictStr
    description: StrictStr = ""
    category: StrictStr = ""
    compound_id: StrictStr = ""
    idempotency_key: StrictStr = ""


def _agenda(a: AgendaItemIn) -> pb.AgendaItemIn:
    return pb.AgendaItemIn(title=a.title, source=a.source, issue_id=a.issue_id.strip(), note=a.note)


def _url(tenant: str, meeting_id: str) -> str:
    return f"/api/v1/tenants/{tenant}/alliance/meetings/{meeting_id}"


# ---------------------------------------------------------------- routes


@bp.get(MEETINGS)
@query(
    COMMUNITY,
    text("when", "时间 upcoming (not yet started) or past", enum=("upcoming", "past")),
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_meetings(tenant: str) -> Response:
    """联席会议列表 A community's meetings, newest first, with attendance counts"""
    req = pb.ListMeetingsRequest(**args())
    req.community_id = list_filter(req.community_id)
    with tenant_call(tenant):
        resp = stub().ListMeetings(req)
    return page("meetings", list(resp.meetings), resp.next_page_token)


@bp.post(MEETINGS)
def schedule_meeting(tenant: str) -> Response:
    """安排联席会议 Schedule a meeting of the community's alliance (MeetingScheduled)"""
    data: ScheduleIn = parse(ScheduleIn, json_body())
    req = pb.ScheduleMeetingRequest(
        community_id=data.community_id.strip(),
        title=data.title,
        station_id=data.station_id.strip(),
        online=data.online,
        online_link=data.online_link,
        invitees=[pb.InviteeIn(kind=i.kind, id=i.id.strip()) for i in data.invitees],
        agenda=[_agenda(a) for a in data.agenda],
        idempotency_key=data.idempotency_key,
    )
    req.starts_at.FromDatetime(parse_time(data.starts_at, "starts_at"))
    if data.ends_at.strip():
        req.ends_at.FromDatetime(parse_time(data.ends_at, "ends_at"))
    with tenant_call(tenant):
        meeting = stub().ScheduleMeeting(req)
    return message(meeting, 201, location=_url(tenant, meeting.id))


@bp.get(f"{MEETINGS}/hot-topics")
@query(COMMUNITY, integer("days", "天数 Days of the window, 1..90 (default 30)", lo=1, hi=90, default=None))
def hot_topics(tenant: str) -> Response:
    """每月一题 Hot topics: the categories and grids with most issues in the last 30 days, against the 30 before"""
    q = args()
    req = pb.GetHotTopicsRequest(community_id=list_filter(q["community_id"] or ""), days=q["days"] or 0)
    with tenant_call(tenant):
        found = stub().GetHotTopics(req)
    return message(found, etag=False)


@bp.get(f"{MEETINGS}/attendance")
@query(
    text("unit_id", "成员单位 Member unit"),
    text("person_id", "人员 Person"),
    COMMUNITY,
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_attendance(tenant: str) -> Response:
    """出席记录 A member unit's or person's attendance, newest meeting first (members: their own)"""
    req = pb.ListAttendanceRequest(**args())
    req.community_id = list_filter(req.community_id)
    with tenant_call(tenant):
        resp = stub().ListAttendance(req)
    return page("records", list(resp.records), resp.next_page_token)


@bp.get(ONE)
def get_meeting(tenant: str, meeting_id: str) -> Response:
    """查看会议 One meeting: agenda, decisions, attendance, action items with their issue and task status"""
    with tenant_call(tenant):
        return message(stub().GetMeeting(pb.GetMeetingRequest(id=meeting_id)))


@bp.post(f"{ONE}/cancel")
def cancel_meeting(tenant: str, meeting_id: str) -> Response:
    """取消会议 Cancel a meeting before it starts, with a reason"""
    data: CancelIn = parse(CancelIn, json_body())
    with tenant_call(tenant):
        return message(stub().CancelMeeting(pb.CancelMeetingRequest(id=meeting_id, reason=data.reason)))


@bp.post(f"{ONE}/agenda")
def add_agenda_item(tenant: str, meeting_id: str) -> Response:
    """增加议题 Add an agenda item (an open issue, a hot topic, or other)"""
    data: AgendaItemIn = parse(AgendaItemIn, json_body())
    with tenant_call(tenant):
        meeting = stub().AddAgendaItem(pb.AddAgendaItemRequest(meeting_id=meeting_id, item=_agenda(data)))
    return message(meeting)


@bp.post(f"{ONE}/proposals")
def propose_item(tenant: str, meeting_id: str) -> Response:
    """成员提议 A member proposes an item for an upcoming meeting of its community"""
    data: ProposeIn = parse(ProposeIn, json_body())
    with tenant_call(tenant):
        meeting = stub().ProposeItem(pb.ProposeItemRequest(meeting_id=meeting_id, title=data.title, note=data.note))
    return message(meeting, 201)


@bp.post(f"{ONE}/proposals/<item_id>/accept")
def accept_proposal(tenant: str, meeting_id: str, item_id: str) -> Response:
    """采纳提议 Put a member's proposal on the agenda"""
    with tenant_call(tenant):
        return message(stub().AcceptProposal(pb.AcceptProposalRequest(meeting_id=meeting_id, item_id=item_id)))


@bp.post(f"{ONE}/check-in")
def check_in(tenant: str, meeting_id: str) -> Response:
    """签到 A member checks in as itself: on time until the start + the grace, late after"""
    data: CheckInIn = parse(CheckInIn, json_body())
    with tenant_call(tenant):
        return message(stub().CheckIn(pb.MeetingCheckInRequest(meeting_id=meeting_id, person_id=data.person_id)))


@bp.post(f"{ONE}/attendance")
def record_attendance(tenant: str, meeting_id: str) -> Response:
    """记录出席 Record an invitee's attendance: on_time, late, excused (请假) or absent"""
    data: AttendanceIn = parse(AttendanceIn, json_body())
    req = pb.RecordMeetingAttendanceRequest(
        meeting_id=meeting_id, unit_id=data.unit_id, person_id=data.person_id, status=data.status
    )
    with tenant_call(tenant):
        return message(stub().RecordAttendance(req))


@bp.post(f"{ONE}/agenda/<item_id>/decision")
def take_decision(tenant: str, meeting_id: str, item_id: str) -> Response:
    """形成决议 Decide an agenda item (from the meeting's start): agreed, rejected or deferred, votes where voted"""
    data: DecisionIn = parse(DecisionIn, json_body())
    req = pb.TakeDecisionRequest(meeting_id=meeting_id, item_id=item_id, **data.model_dump())
    with tenant_call(tenant):
        return message(stub().TakeDecision(req))


@bp.post(f"{ONE}/agenda/<item_id>/actions")
def open_action_item(tenant: str, meeting_id: str, item_id: str) -> Response:
    """跟进事项 An agreed item's action item becomes an issue in intake (once, whatever the retries)"""
    data: ActionIn = parse(ActionIn, json_body())
    req = pb.OpenActionItemRequest(meeting_id=meeting_id, item_id=item_id, **data.model_dump())
    with tenant_call(tenant):
        return message(stub().OpenActionItem(req), 201)


@bp.post(f"{ONE}/close")
def close_meeting(tenant: str, meeting_id: str) -> Response:
    """结束会议 End a meeting that has started: everyone invited without a record is recorded absent"""
    with tenant_call(tenant):
        return message(stub().CloseMeeting(pb.CloseMeetingRequest(id=meeting_id)))


@bp.get(f"{ONE}/minutes.docx")
def minutes(tenant: str, meeting_id: str) -> Response:
    """会议纪要 The minutes as a Word document (Chinese) to print and sign"""
    with tenant_call(tenant):
        found = stub().GetMinutes(pb.GetMinutesRequest(id=meeting_id))
    resp = Response(found.content, mimetype=found.content_type)
    resp.headers["Content-Disposition"] = content_disposition(found.filename, "minutes.docx")
    return resp


DOCS.update(
    {
        "alliance_meetings.list_meetings": Doc(pb.MeetingRow, list_key="meetings", errors=(400,)),
        "alliance_meetings.schedule_meeting": Doc(
            pb.Meeting, 201, ScheduleIn, errors=(400, 404), headers=("ETag", "Location")
        ),
        "alliance_meetings.hot_topics": Doc(pb.HotTopics, errors=(400,)),
        "alliance_meetings.list_attendance": Doc(pb.AttendanceRow, list_key="records", errors=(400,)),
        "alliance_meetings.get_meeting": Doc(pb.Meeting, errors=(404,), headers=("ETag",)),
        "alliance_meetings.cancel_meeting": Doc(pb.Meeting, body=CancelIn, errors=(400, 404, 409), headers=("ETag",)),
        "alliance_meetings.add_agenda_item": Doc(
            pb.Meeting, body=AgendaItemIn, errors=(400, 404, 409), headers=("ETag",)
        ),
        "alliance_meetings.propose_item": Doc(pb.Meeting, 201, ProposeIn, errors=(400, 404, 409), headers=("ETag",)),
        "alliance_meetings.accept_proposal": Doc(pb.Meeting, errors=(404, 409), headers=("ETag",)),
        "alliance_meetings.check_in": Doc(pb.Meeting, body=CheckInIn, errors=(400, 404, 409), headers=("ETag",)),
        "alliance_meetings.record_attendance": Doc(
            pb.Meeting, body=AttendanceIn, errors=(400, 404, 409), headers=("ETag",)
        ),
        "alliance_meetings.take_decision": Doc(pb.Meeting, body=DecisionIn, errors=(400, 404, 409), headers=("ETag",)),
        "alliance_meetings.open_action_item": Doc(pb.Meeting, 201, ActionIn, errors=(400, 404, 409), headers=("ETag",)),
        "alliance_meetings.close_meeting": Doc(pb.Meeting, errors=(404, 409), headers=("ETag",)),
    }
)
