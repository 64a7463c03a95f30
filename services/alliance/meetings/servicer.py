"""MeetingService gRPC servicer: protobuf <-> commands, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.alliance.v1 import meetings_pb2 as pb
from hongling.alliance.v1 import meetings_pb2_grpc as pb_grpc

from services.alliance.meetings import domain, handlers, minutes, peers
from services.alliance.meetings.documents import ItemDoc, MeetingDoc
from services.common.context import require_tenant

SERVICE = "hongling.alliance.v1.MeetingService"


def _ts(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(at if at.tzinfo else at.replace(tzinfo=UTC))
    return ts


def _time(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def _counts(doc: MeetingDoc) -> pb.AttendanceCounts:
    c = domain.attendance_counts(len(doc.invitees), [a.status for a in doc.attendance])
    return pb.AttendanceCounts(
        invited=c["invited"],
        on_time=c[domain.ON_TIME],
        late=c[domain.LATE],
        excused=c[domain.EXCUSED],
        absent=c[domain.ABSENT],
        unrecorded=c["unrecorded"],
    )


def _item(i: ItemDoc, follows: dict[str, peers.Follow]) -> pb.AgendaItem:
    out = pb.AgendaItem(
        id=i.id, title=i.title, source=i.source, issue_id=i.issue_id, note=i.note, proposed_by=i.proposed_by
    )
    if i.decision is not None:
        d = i.decision
        out.decision.CopyFrom(
            pb.Decision(
                outcome=d.outcome,
                voted=bool(d.voted),
                votes_for=d.votes_for or 0,
                votes_against=d.votes_against or 0,
                votes_abstain=d.votes_abstain or 0,
                note=d.note,
                by=d.by,
                at=_ts(d.at),
            )
        )
    for a in i.actions:
        f = follows.get(a.target_id) or peers.Follow("")
        out.actions.append(
            pb.ActionItem(
                id=a.id,
                title=a.title,
                description=a.description,
                category=a.category,
                kind=a.kind,
                target_id=a.target_id,
                opened_at=_ts(a.opened_at),
                by=a.by,
                status=f.status,
                task_id=f.task_id,
                task_status=f.task_status,
                task_status_zh=f.task_status_zh,
            )
        )
    return out


def follows_of(doc: MeetingDoc) -> dict[str, peers.Follow]:
    return {a.target_id: peers.follow(a.target_id) for i in doc.agenda for a in i.actions}


def meeting_to_pb(doc: MeetingDoc, follows: dict[str, peers.Follow] | None = None) -> pb.Meeting:
    follows = follows or {}
    names = {f"{i.kind}:{i.id}": i.name_zh for i in doc.invitees}
    return pb.Meeting(
        id=doc.id,
        tenant=require_tenant(),
        community_id=doc.community_id,
        title=doc.title,
        starts_at=_ts(doc.starts_at),
        ends_at=_ts(doc.ends_at),
        place_kind=doc.place_kind,
        station_id=doc.station_id,
        place=doc.place,
        online_link=doc.online_link,
        invitees=[pb.Invitee(kind=i.kind, id=i.id, name_zh=i.name_zh) for i in doc.invitees],
        agenda=[_item(i, follows) for i in doc.agenda],
        proposals=[_item(i, follows) for i in doc.proposals],
        attendance=[
            pb.AttendanceRecord(
                unit_id=a.unit_id,
                person_id=a.person_id,
                status=a.status,
                recorded_by=a.recorded_by,
                at=_ts(a.at),
                name_zh=names.get(a.key, ""),
                person_name_zh=a.person_name_zh or "",
            )
            for a in doc.attendance
        ],
        counts=_counts(doc),
        status=doc.status,
        status_zh=domain.STATUS_ZH.get(doc.status, doc.status),
        cancel_reason=doc.cancel_reason,
        created_by=doc.created_by,
        created_at=_ts(doc.created_at),
        version=doc.version or 1,
        updated_at=_ts(doc.updated_at or doc.created_at),
        grace_minutes=doc.grace_minutes or 0,
        closes_at=_ts(doc.closes_at),
    )


def _agenda_in(a: pb.AgendaItemIn) -> domain.AgendaIn:
    return domain.AgendaIn(a.title, a.source, a.issue_id, a.note)


def minutes_of(doc: MeetingDoc, follows: dict[str, peers.Follow]) -> minutes.MinutesIn:
    """The minutes' contents in names, never codes: the community's name and the names of the people who
    attended for units from org (one look-up each, cached; names only, no contact data)."""
    by_key = {a.key: a for a in doc.attendance}
    rows = []
    for i in doc.invitees:
        rec = by_key.get(f"{i.kind}:{i.id}")
        attendee = ""
        if rec is not None and i.kind == domain.UNIT and rec.person_id:
            attendee = rec.person_name_zh or peers.person_name(rec.person_id) or minutes.UNKNOWN_PERSON
        rows.append(minutes.Row(i.name_zh or i.id, i.kind, rec.status if rec else "", attendee))
    items = []
    for it in doc.agenda:
        d = it.decision
        items.append(
            minutes.Item(
                title=it.title,
                source=it.source,
                outcome=d.outcome if d else "",
                voted=bool(d.voted) if d else False,
                votes=(d.votes_for or 0, d.votes_against or 0, d.votes_abstain or 0) if d else (0, 0, 0),
                note=d.note if d else "",
                actions=[
                    minutes.Action(
                        a.title,
                        a.target_id,
                        follows.get(a.target_id, peers.Follow("")).task_id,
                        follows.get(a.target_id, peers.Follow("")).status,
                    )
                    for a in it.actions
                ],
            )
        )
    starts = handlers.aware(doc.starts_at)
    assert starts is not None
    return minutes.MinutesIn(
        doc.title,
        peers.community_name(doc.community_id),
        starts,
        handlers.aware(doc.ends_at),
        doc.place,
        doc.status,
        rows,
        items,
    )


class MeetingServicer(pb_grpc.MeetingServiceServicer):
    def ScheduleMeeting(self, request: pb.ScheduleMeetingRequest, context: grpc.ServicerContext) -> pb.Meeting:
        handlers.authorize_schedule(request.community_id)
        new = domain.check_new_meeting(
            community_id=request.community_id,
            title=request.title,
            starts_at=_time(request.starts_at, request.HasField("starts_at")),
            ends_at=_time(request.ends_at, request.HasField("ends_at")),
            station_id=request.station_id,
            online=request.online,
            online_link=request.online_link,
            invitees=[(i.kind, i.id) for i in request.invitees],
            agenda=[_agenda_in(a) for a in request.agenda],
            now=handlers.utcnow(),
        )
        key = domain.text(request.idempotency_key, "idempotency_key", "幂等键", 200)
        return meeting_to_pb(handlers.schedule(new, key))

    def GetMeeting(self, request: pb.GetMeetingRequest, context: grpc.ServicerContext) -> pb.Meeting:
        doc = handlers.get_meeting(request.id.strip())
        return meeting_to_pb(doc, follows_of(doc))

    def ListMeetings(self, request: pb.ListMeetingsRequest, context: grpc.ServicerContext) -> pb.ListMeetingsResponse:
        rows, token = handlers.list_meetings(request.community_id, request.when, request.page_size, request.page_token)
        out = pb.ListMeetingsResponse(next_page_token=token)
        for r in rows:
            out.meetings.append(
                pb.MeetingRow(
                    id=r.id,
                    community_id=r.community_id,
                    title=r.title,
                    starts_at=_ts(r.starts_at),
                    ends_at=_ts(r.ends_at),
                    place=r.place,
                    status=r.status,
                    agenda_items=r.agenda_items,
                    decided_items=r.decided_items,
                    counts=pb.AttendanceCounts(
                        invited=r.invited,
                        on_time=r.on_time,
                        late=r.late,
                        excused=r.excused,
                        absent=r.absent,
                        unrecorded=max(0, r.invited - r.on_time - r.late - r.excused - r.absent),
                    ),
                )
            )
        return out

    def CancelMeeting(self, request: pb.CancelMeetingRequest, context: grpc.ServicerContext) -> pb.Meeting:
        return meeting_to_pb(handlers.cancel(request.id.strip(), request.reason))

    def ProposeItem(self, request: pb.ProposeItemRequest, context: grpc.ServicerContext) -> pb.Meeting:
        return meeting_to_pb(handlers.propose(request.meeting_id.strip(), request.title, request.note))

    def AcceptProposal(self, request: pb.AcceptProposalRequest, context: grpc.ServicerContext) -> pb.Meeting:
        return meeting_to_pb(handlers.accept_proposal(request.meeting_id.strip(), request.item_id.strip()))

    def AddAgendaItem(self, request: pb.AddAgendaItemRequest, context: grpc.ServicerContext) -> pb.Meeting:
        return meeting_to_pb(handlers.add_item(request.meeting_id.strip(), _agenda_in(request.item)))

    def CheckIn(self, request: pb.MeetingCheckInRequest, context: grpc.ServicerContext) -> pb.Meeting:
        return meeting_to_pb(handlers.check_in(request.meeting_id.strip(), request.person_id))

    def RecordAttendance(self, request: pb.RecordMeetingAttendanceRequest, context: grpc.ServicerContext) -> pb.Meeting:
        return meeting_to_pb(
            handlers.record_attendance(request.meeting_id.strip(), request.unit_id, request.person_id, request.status)
        )

    def TakeDecision(self, request: pb.TakeDecisionRequest, context: grpc.ServicerContext) -> pb.Meeting:
        decision = domain.DecisionIn(
            request.outcome,
            request.voted,
            request.votes_for,
            request.votes_against,
            request.votes_abstain,
            request.note,
        )
        return meeting_to_pb(handlers.take_decision(request.meeting_id.strip(), request.item_id.strip(), decision))

    def OpenActionItem(self, request: pb.OpenActionItemRequest, context: grpc.ServicerContext) -> pb.Meeting:
        doc = handlers.open_action(
            request.meeting_id.strip(),
            request.item_id.strip(),
            title=request.title,
            description=request.description,
            category=request.category,
            compound_id=request.compound_id,
            idempotency_key=request.idempotency_key,
        )
        return meeting_to_pb(doc, follows_of(doc))

    def CloseMeeting(self, request: pb.CloseMeetingRequest, context: grpc.ServicerContext) -> pb.Meeting:
        return meeting_to_pb(handlers.close(request.id.strip()))

    def GetHotTopics(self, request: pb.GetHotTopicsRequest, context: grpc.ServicerContext) -> pb.HotTopics:
        found: dict[str, Any] = handlers.hot_topics(request.community_id, request.days)
        days = int(found["days"])

        def topic(kind: str, t: domain.Topic, name: str) -> pb.HotTopic:
            return pb.HotTopic(
                kind=kind,
                code=t.code,
                name_zh=name,
                count=t.count,
                previous=t.previous,
                delta=t.delta,
                summary_zh=domain.topic_summary(name, t, days),
            )

        return pb.HotTopics(
            community_id=found["community_id"],
            days=days,
            from_day=found["from_day"].isoformat(),
            to_day=found["to_day"].isoformat(),
            categories=[topic("category", t, n) for t, n in found["categories"]],
            grids=[topic("grid", t, n) for t, n in found["grids"]],
        )

    def ListAttendance(
        self, request: pb.ListAttendanceRequest, context: grpc.ServicerContext
    ) -> pb.ListAttendanceResponse:
        rows, token = handlers.list_attendance(
            request.unit_id, request.person_id, request.community_id, request.page_size, request.page_token
        )
        return pb.ListAttendanceResponse(
            records=[
                pb.AttendanceRow(
                    meeting_id=r.meeting_id,
                    community_id=r.community_id,
                    title=r.title,
                    starts_at=_ts(r.starts_at),
                    unit_id=r.unit_id,
                    person_id=r.person_id,
                    status=r.status,
                    at=_ts(r.at),
                )
                for r in rows
            ],
            next_page_token=token,
        )

    def GetMinutes(self, request: pb.GetMinutesRequest, context: grpc.ServicerContext) -> pb.Minutes:
        doc = handlers.get_meeting(request.id.strip())
        domain.require_staff(handlers._caller().role, "export minutes")
        m = minutes_of(doc, follows_of(doc))
        return pb.Minutes(
            filename=minutes.filename(doc.title, m.starts_at),
            content_type=minutes.CONTENT_TYPE,
            content=minutes.render(m),
        )


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_MeetingServiceServicer_to_server(MeetingServicer(), server)
    return [SERVICE]
