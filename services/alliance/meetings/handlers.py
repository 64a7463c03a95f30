"""Meeting commands: load, apply the rules (domain.py), save the meeting with its events in one write.

Every change after the creation goes through the unit of work (services/common/unitofwork.py): the meeting's
next version is claimed by an insert ("meeting:<id>:<version>") and only the winner writes it; a loser reads
again and decides again, so concurrent check-ins never lose one. A meeting's close is a durable timer
("alliance.meeting_close", key "meeting:<id>", at its end or its start + 3 h), set before the meeting is
written (a saved meeting always has one): it survives restarts, and its handler is idempotent (an ended
meeting records nobody twice).

Community scope: a community worker schedules in its own community only (403 community_out_of_scope) and
another community's meeting is NOT_FOUND in the words of a missing one; a member reads and checks in to the
meetings it is invited to, and proposes items for upcoming meetings of its community.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import alliance_events_pb2 as ev

from services.alliance.meetings import domain, peers, readmodel
from services.alliance.meetings.documents import (
    ActionDoc,
    AttendanceDoc,
    DecisionDoc,
    InviteeDoc,
    ItemDoc,
    MeetingDoc,
    MeetingSettingsDoc,
)
from services.alliance.shared import aware, conflicts, require_unit_person, utcnow
from services.common import clocks, community, rollups, unitofwork
from services.common.context import current_principal, require_tenant
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.principal import Principal
from services.common.unitofwork import UnitOfWork
from services.common.vocabulary import ISSUE_STATUS_ZH

log = logging.getLogger(__name__)
CLOSE_KIND = "alliance.meeting_close"
SETTINGS_ID = "settings"
# A close timer that finds no meeting (it came due before the meeting's insert landed: a meeting entered after
# it ended) looks again CLOSE_WAIT_SECONDS later, up to CLOSE_WAITS times; then the meeting was never saved.
CLOSE_WAIT_SECONDS = 30
CLOSE_WAITS = 10
HOT_LIMIT = 5

CONFLICTS = conflicts("meeting", "会议")


def _ts(at: datetime | None) -> Timestamp:
    ts = Timestamp()
    if at is not None:
        ts.FromDatetime(aware(at) or at)
    return ts


def _subject(meeting_id: str) -> str:
    return f"meetings/{meeting_id}"


def _missing(meeting_id: str) -> NotFound:
    return NotFound(community.not_found_message("meeting", meeting_id), field="id")


def _caller() -> Principal:
    p = current_principal.get()
    if p is None:  # the interceptor refuses calls without one; the timer's handler runs as the service
        return Principal(sub="alliance", role="service", tenants=(require_tenant(),))
    return p


def _responder_key(p: Principal) -> str:
    if p.responder is None:
        return ""
    kind, rid = p.responder
    return f"{kind}:{rid}"


def grace_minutes(uow: UnitOfWork = unitofwork.MONGO) -> int:
    """The tenant's check-in grace (meeting_settings "settings"), default 10 minutes."""
    found = uow.load(MeetingSettingsDoc, SETTINGS_ID)
    return int(found.grace_minutes) if found is not None else domain.DEFAULT_GRACE_MINUTES


# ---------------------------------------------------------------- reading


def get_meeting(meeting_id: str, uow: UnitOfWork = unitofwork.MONGO) -> MeetingDoc:
    """The meeting, if the caller may see it: staff of its community (or the tenant), a member invited to it."""
    doc = uow.load(MeetingDoc, meeting_id) if meeting_id else None
    if doc is None or not _may_see(doc, _caller()):
        raise _missing(meeting_id)
    return doc


def _may_see(doc: MeetingDoc, p: Principal) -> bool:
    if p.role == domain.MEMBER:
        return _responder_key(p) in {f"{i.kind}:{i.id}" for i in doc.invitees}
    return community.sees(doc.community_id, p)


def _load_for_change(meeting_id: str, uow: UnitOfWork) -> MeetingDoc:
    return get_meeting(meeting_id, uow)


def _change(
    meeting_id: str, mutate: Callable[[MeetingDoc, datetime], bool], uow: UnitOfWork, now: Callable[[], datetime]
) -> MeetingDoc:
    _load_for_change(meeting_id, uow)  # scope first: another community's meeting is missing
    done = unitofwork.change(uow, MeetingDoc, f"meeting:{meeting_id}", meeting_id, mutate, conflicts=CONFLICTS, now=now)
    if done.doc is None:
        raise _missing(meeting_id)
    return done.doc


# ---------------------------------------------------------------- scheduling


def authorize_schedule(community_id: str) -> None:
    """Authority first: who may schedule in this community is decided before the contents are looked at."""
    domain.require_staff(_caller().role, "schedule meetings")
    community.require_placed_in_scope(community_id.strip())


def schedule(
    new: domain.NewMeeting,
    idempotency_key: str = "",
    *,
    now: Callable[[], datetime] = utcnow,
    uow: UnitOfWork = unitofwork.MONGO,
) -> MeetingDoc:
    """Schedule the meeting. Its close timer is set before the meeting is written: whatever fails after, a
    saved meeting always has its timer (a retry with the same key finds the meeting and makes sure of it)."""
    p = _caller()
    domain.require_staff(p.role, "schedule meetings")
    community.require_placed_in_scope(new.community_id)
    meeting_id = domain.new_meeting_id(idempotency_key, p.sub)
    if idempotency_key:
        found = uow.load(MeetingDoc, meeting_id)
        if found is not None:
            return _with_close_timer(found)
    if new.online:
        if not peers.community_exists(new.community_id):
            raise InvalidArgument(
                f"未找到该社区 (community_id: no community {new.community_id!r} in this tenant)", field="community_id"
            )
        place = "online"
    else:
        station = peers.station(new.station_id)
        if station.community_id != new.community_id:
            raise InvalidArgument(
                f"该网格驿站不属于本社区 (station_id: {new.station_id!r} is not a grid station of community "
                f"{new.community_id!r})",
                field="station_id",
            )
        place = station.name_zh
    invitees = []
    for n, inv in enumerate(new.invitees):
        name, home = peers.invitee(inv.kind, inv.id, f"invitees[{n}].id")
        if home != new.community_id:
            raise InvalidArgument(
                f"该成员不属于本社区 (invitees[{n}].id: {inv.kind} {inv.id!r} is not of community "
                f"{new.community_id!r})",
                field=f"invitees[{n}].id",
            )
        invitees.append(InviteeDoc(kind=inv.kind, id=inv.id, name_zh=name))
    at = now()
    agenda = [_agenda_item(item, f"agenda[{n}]", new.community_id, at) for n, item in enumerate(new.agenda)]
    closes = domain.closes_at(new.starts_at, new.ends_at)
    doc = MeetingDoc(
        id=meeting_id,
        community_id=new.community_id,
        title=new.title,
        starts_at=new.starts_at,
        ends_at=new.ends_at,
        closes_at=closes,
        place_kind="online" if new.online else "station",
        station_id=new.station_id,
        place=place,
        online_link=new.online_link,
        invitees=invitees,
        agenda=agenda,
        status=domain.SCHEDULED,
        grace_minutes=grace_minutes(uow),
        created_by=p.sub,
        created_at=at,
        version=1,
        updated_at=at,
    )
    doc.record(
        ev.MeetingScheduled(
            meeting_id=meeting_id,
            tenant=require_tenant(),
            community_id=new.community_id,
            title=new.title,
            starts_at=_ts(new.starts_at),
            place=place,
            invited_unit_ids=[i.id for i in invitees if i.kind == domain.UNIT],
            invited_person_ids=[i.id for i in invitees if i.kind == domain.PERSON],
            agenda_items=len(agenda),
            by=p.sub,
            at=_ts(at),
        ),
        subject=_subject(meeting_id),
        at=at,
    )
    doc.validate()
    # The timer first: should the meeting's write fail, the timer finds no meeting and lets it be.
    _set_close_timer(meeting_id, closes)
    if not uow.write(doc, 0):
        found = uow.load(MeetingDoc, meeting_id)
        if found is None:
            raise FailedPrecondition("会议未能保存，请重试 (the meeting was not saved: try again)", field="id")
        return found  # the same idempotency key, scheduled a moment ago by a concurrent call (its timer is set)
    return doc


def _timer_key(meeting_id: str) -> str:
    return f"meeting:{meeting_id}"


def _set_close_timer(meeting_id: str, closes: datetime, waits: int = 0) -> None:
    payload = {"meeting_id": meeting_id}
    if waits:
        payload["waits"] = str(waits)
    clocks.schedule(_timer_key(meeting_id), CLOSE_KIND, closes, payload)


def _with_close_timer(doc: MeetingDoc) -> MeetingDoc:
    """A meeting found again by its idempotency key: one still to close has its close timer (set again if it
    is missing: timers are set by key, so this never makes two)."""
    if doc.status == domain.SCHEDULED and not doc.ended and clocks.get(_timer_key(doc.id)) is None:
        closes = aware(doc.closes_at) or domain.closes_at(aware(doc.starts_at) or utcnow(), aware(doc.ends_at))
        _set_close_timer(doc.id, closes)
    return doc


def _agenda_item(item: domain.AgendaIn, where: str, community_id: str, at: datetime) -> ItemDoc:
    title = item.title
    if item.source == "issue":
        found = peers.issue(item.issue_id, f"{where}.issue_id")
        if found.community_id != community_id or not community.sees(found.community_id):
            raise InvalidArgument(
                f"该事项不属于本社区 ({where}.issue_id: issue {item.issue_id!r} is not of community {community_id!r})",
                field=f"{where}.issue_id",
            )
        if domain.issue_closed(found.status, found.open311_status):
            zh = ISSUE_STATUS_ZH.get(found.status, "已关闭")
            raise InvalidArgument(
                f"该事项{zh}，不能列入议程 ({where}.issue_id: issue {item.issue_id!r} is {found.status}: only open "
                "issues go on the agenda)",
                field=f"{where}.issue_id",
            )
        title = title or found.title  # the issue's title as it was when put on the agenda
    return ItemDoc(id=domain.new_item_id(), title=title, source=item.source, issue_id=item.issue_id, note=item.note)


def cancel(meeting_id: str, reason: str, *, uow: UnitOfWork = unitofwork.MONGO) -> MeetingDoc:
    p = _caller()
    domain.require_staff(p.role, "cancel meetings")

    def mutate(doc: MeetingDoc, at: datetime) -> bool:
        doc.cancel_reason = domain.check_cancel(doc.status, aware(doc.starts_at) or at, at, reason)
        doc.status = domain.CANCELLED
        return True

    doc = _change(meeting_id, mutate, uow, utcnow)
    clocks.cancel(_timer_key(meeting_id))
    return doc


# ---------------------------------------------------------------- agenda


def add_item(meeting_id: str, item: domain.AgendaIn, *, uow: UnitOfWork = unitofwork.MONGO) -> MeetingDoc:
    p = _caller()
    domain.require_staff(p.role, "change the agenda")
    checked = domain.check_agenda_item(item, "item")
    current = get_meeting(meeting_id, uow)
    new_item = _agenda_item(checked, "item", current.community_id, utcnow())

    def mutate(doc: MeetingDoc, _at: datetime) -> bool:
        _agenda_open(doc)
        doc.agenda.append(new_item)
        return True

    return _change(meeting_id, mutate, uow, utcnow)


def _agenda_open(doc: MeetingDoc) -> None:
    domain.require_open(doc.status, "修改议程", "change the agenda")
    if doc.status == domain.MINUTED:
        raise FailedPrecondition("会议已形成纪要 (the meeting is minuted)", field="meeting_id")
    if len(doc.agenda) >= domain.MAX_AGENDA:
        raise FailedPrecondition(f"议题至多{domain.MAX_AGENDA}项 (at most {domain.MAX_AGENDA} items)", field="item")


def propose(meeting_id: str, title: str, note: str, *, uow: UnitOfWork = unitofwork.MONGO) -> MeetingDoc:
    """A member proposes an item for an upcoming meeting of its own community."""
    p = _caller()
    if p.role != domain.MEMBER or p.responder is None:
        raise PermissionDenied("仅成员单位或个人可提议议题 (only members propose items)", reason="role_not_allowed")
    title = domain.text(title, "title", "议题", domain.TITLE_MAX, required=True)
    note = domain.text(note, "note", "说明", domain.NOTE_MAX)
    kind, rid = p.responder
    if kind not in domain.INVITEE_KINDS:
        raise PermissionDenied("仅成员单位或个人可提议议题 (a team does not propose items)", reason="role_not_allowed")
    doc = uow.load(MeetingDoc, meeting_id) if meeting_id else None
    if doc is None:
        raise _missing(meeting_id)
    _, home = peers.invitee(kind, rid, "responder")
    if home != doc.community_id:
        raise _missing(meeting_id)  # a meeting of another community: as a missing one
    by = f"{kind}:{rid}"

    def mutate(d: MeetingDoc, at: datetime) -> bool:
        if d.status != domain.SCHEDULED or at >= (aware(d.starts_at) or at):
            raise FailedPrecondition(
                "只能为尚未开始的会议提议议题 (items are proposed for upcoming meetings only)", field="meeting_id"
            )
        if len(d.proposals) >= domain.MAX_AGENDA:
            raise FailedPrecondition("提议已满 (too many proposals)", field="meeting_id")
        d.proposals.append(
            ItemDoc(id=domain.new_item_id(), title=title, source="proposal", note=note, proposed_by=by, proposed_at=at)
        )
        return True

    done = unitofwork.change(
        uow, MeetingDoc, f"meeting:{meeting_id}", meeting_id, mutate, conflicts=CONFLICTS, now=utcnow
    )
    assert done.doc is not None
    return done.doc


def accept_proposal(meeting_id: str, item_id: str, *, uow: UnitOfWork = unitofwork.MONGO) -> MeetingDoc:
    p = _caller()
    domain.require_staff(p.role, "accept proposals")

    def mutate(doc: MeetingDoc, _at: datetime) -> bool:
        found = next((i for i in doc.proposals if i.id == item_id), None)
        if found is None:
            if any(i.id == item_id for i in doc.agenda):
                return False  # accepted already
            raise NotFound(f"未找到该提议 (no proposal {item_id!r} on this meeting)", field="item_id")
        _agenda_open(doc)
        doc.proposals = [i for i in doc.proposals if i.id != item_id]
        doc.agenda.append(found)
        return True

    return _change(meeting_id, mutate, uow, utcnow)


# ---------------------------------------------------------------- attendance


def _record(
    doc: MeetingDoc,
    key: str,
    unit_id: str,
    person_id: str,
    status: str,
    by: str,
    at: datetime,
    person_name: str = "",
) -> None:
    doc.attendance = [a for a in doc.attendance if a.key != key]
    doc.attendance.append(
        AttendanceDoc(
            key=key,
            unit_id=unit_id,
            person_id=person_id,
            person_name_zh=person_name,
            status=status,
            recorded_by=by,
            at=at,
        )
    )
    doc.record(
        ev.AttendanceRecorded(
            meeting_id=doc.id,
            tenant=require_tenant(),
            community_id=doc.community_id,
            unit_id=unit_id,
            person_id=person_id,
            status=status,
            recorded_by=by,
            starts_at=_ts(doc.starts_at),
            at=_ts(at),
        ),
        subject=_subject(doc.id),
        at=at,
    )


def _invited(doc: MeetingDoc, key: str, field: str) -> None:
    if key not in {f"{i.kind}:{i.id}" for i in doc.invitees}:
        raise InvalidArgument(f"未受邀参加本次会议 ({field}: {key!r} is not invited to this meeting)", field=field)


def check_in(
    meeting_id: str, person_id: str = "", *, uow: UnitOfWork = unitofwork.MONGO, now: Callable[[], datetime] = utcnow
) -> MeetingDoc:
    """A member checks in as itself (a unit may name the person who attends for it)."""
    p = _caller()
    if p.role != domain.MEMBER or p.responder is None:
        raise PermissionDenied("签到须使用成员本人的凭证 (check-in is a member's own)", reason="role_not_allowed")
    kind, rid = p.responder
    key = f"{kind}:{rid}"
    get_meeting(meeting_id, uow)  # not invited: as a missing meeting
    person_id = domain.ident(person_id, "person_id", "参会人", required=False)
    if kind == domain.PERSON:
        if person_id and person_id != rid:
            raise PermissionDenied("只能为本人签到 (a person checks in as themselves)", reason="not_your_responder")
        unit_id, attendee, name = "", rid, ""
    else:
        unit_id, attendee, name = rid, person_id, ""
        if attendee:
            name = require_unit_person(unit_id, attendee)

    def mutate(doc: MeetingDoc, at: datetime) -> bool:
        domain.check_check_in(doc.status, at, aware(doc.starts_at) or at)
        held = next((a for a in doc.attendance if a.key == key), None)
        if held is not None:
            if held.recorded_by == "self":
                return False  # checked in already (a retry)
            raise FailedPrecondition(
                f"出席情况已由社区记录为{domain.ATTENDANCE_ZH.get(held.status, held.status)} (already recorded)",
                field="meeting_id",
            )
        status = domain.check_in_status(at, aware(doc.starts_at) or at, doc.grace_minutes or 0)
        _record(doc, key, unit_id, attendee, status, "self", at, name)
        return True

    done = unitofwork.change(uow, MeetingDoc, f"meeting:{meeting_id}", meeting_id, mutate, conflicts=CONFLICTS, now=now)
    assert done.doc is not None
    return done.doc


def record_attendance(
    meeting_id: str, unit_id: str, person_id: str, status: str, *, uow: UnitOfWork = unitofwork.MONGO
) -> MeetingDoc:
    """Staff record an invitee's attendance (a unit's: who attended for it, where anyone did)."""
    p = _caller()
    domain.require_staff(p.role, "record attendance")
    status = domain.check_status(status)
    unit_id = domain.ident(unit_id, "unit_id", "成员单位", required=False)
    person_id = domain.ident(person_id, "person_id", "人员", required=not unit_id)
    key, field = (f"{domain.UNIT}:{unit_id}", "unit_id") if unit_id else (f"{domain.PERSON}:{person_id}", "person_id")
    name = ""
    if unit_id and person_id:
        name = require_unit_person(unit_id, person_id)

    def mutate(doc: MeetingDoc, at: datetime) -> bool:
        domain.require_open(doc.status, "记录出席", "record attendance")
        _invited(doc, key, field)
        if status in (domain.ON_TIME, domain.LATE) and at < (aware(doc.starts_at) or at) - domain.CHECK_IN_OPENS:
            raise FailedPrecondition("会议尚未开始，不能记录到会 (the meeting has not started)", field="status")
        _record(doc, key, unit_id, person_id, status, p.sub, at, name)
        return True

    return _change(meeting_id, mutate, uow, utcnow)


# ---------------------------------------------------------------- decisions, close


def take_decision(
    meeting_id: str, item_id: str, decision: domain.DecisionIn, *, uow: UnitOfWork = unitofwork.MONGO
) -> MeetingDoc:
    p = _caller()
    domain.require_staff(p.role, "record decisions")

    def mutate(doc: MeetingDoc, at: datetime) -> bool:
        item = next((i for i in doc.agenda if i.id == item_id), None)
        if item is None:
            raise NotFound(f"未找到该议题 (no agenda item {item_id!r} on this meeting)", field="item_id")
        domain.check_decidable(doc.status, item.decision is not None, now=at, starts_at=aware(doc.starts_at) or at)
        d = domain.check_decision(decision, len(doc.invitees))
        item.decision = DecisionDoc(
            outcome=d.outcome,
            voted=d.voted,
            votes_for=d.votes_for,
            votes_against=d.votes_against,
            votes_abstain=d.votes_abstain,
            note=d.note,
            by=p.sub,
            at=at,
        )
        doc.record(
            ev.DecisionTaken(
                meeting_id=doc.id,
                tenant=require_tenant(),
                community_id=doc.community_id,
                item_id=item.id,
                outcome=d.outcome,
                votes_for=d.votes_for,
                votes_against=d.votes_against,
                votes_abstain=d.votes_abstain,
                voted=d.voted,
                action_items=len(item.actions),
                at=_ts(at),
            ),
            subject=_subject(doc.id),
            at=at,
        )
        doc.status = domain.status_after(bool(doc.ended), [i.decision is not None for i in doc.agenda])
        return True

    return _change(meeting_id, mutate, uow, utcnow)


def _close(doc: MeetingDoc, at: datetime) -> bool:
    """End the meeting: the invited without a record are recorded absent; minuted if every item is decided."""
    if doc.status == domain.CANCELLED or doc.ended:
        return False
    invitees = [domain.Invitee(i.kind, i.id) for i in doc.invitees]
    for missing in domain.absentees(invitees, [a.key for a in doc.attendance]):
        unit_id, person_id = (missing.id, "") if missing.kind == domain.UNIT else ("", missing.id)
        _record(doc, missing.key, unit_id, person_id, domain.ABSENT, "system", at)
    doc.ended = True
    doc.status = domain.status_after(True, [i.decision is not None for i in doc.agenda])
    return True


def close(meeting_id: str, *, uow: UnitOfWork = unitofwork.MONGO) -> MeetingDoc:
    p = _caller()
    domain.require_staff(p.role, "end meetings")

    def mutate(doc: MeetingDoc, at: datetime) -> bool:
        domain.require_open(doc.status, "结束", "end it")
        if at < (aware(doc.starts_at) or at):
            raise FailedPrecondition("会议尚未开始，不能结束 (the meeting has not started)", field="id")
        return _close(doc, at)

    doc = _change(meeting_id, mutate, uow, utcnow)
    clocks.cancel(_timer_key(meeting_id))
    return doc


@clocks.handler(CLOSE_KIND)
def on_close_timer(timer: clocks.Timer, *, uow: UnitOfWork = unitofwork.MONGO) -> None:
    """The meeting's end came: close it (idempotent: an ended or cancelled meeting changes nothing).

    The timer is set just before its meeting is written, so it can come due first (a meeting entered after it
    ended): no meeting yet, it looks again a little later; after CLOSE_WAITS looks the meeting was never saved."""
    meeting_id = timer.payload.get("meeting_id", "")
    if not meeting_id:
        log.warning("meeting close timer %s has no meeting_id: dropped", timer.key)
        return
    done = unitofwork.change(
        uow, MeetingDoc, f"meeting:{meeting_id}", meeting_id, _close, conflicts=CONFLICTS, now=utcnow, wait_for_doc=2.0
    )
    if done.doc is not None:
        return
    waits = int(timer.payload.get("waits", "0") or 0) + 1
    if waits > CLOSE_WAITS:
        log.info("meeting close timer %s: no such meeting (never saved): dropped", timer.key)
        return
    _set_close_timer(meeting_id, utcnow() + timedelta(seconds=CLOSE_WAIT_SECONDS), waits)


# ---------------------------------------------------------------- action items


def open_action(
    meeting_id: str,
    item_id: str,
    *,
    title: str,
    description: str,
    category: str,
    compound_id: str,
    idempotency_key: str,
    uow: UnitOfWork = unitofwork.MONGO,
) -> MeetingDoc:
    """An agreed item's action item as an issue in intake (origin "meeting:<id>"), filed once whatever the retries."""
    p = _caller()
    domain.require_staff(p.role, "open action items")
    title = domain.text(title, "title", "跟进事项", domain.TITLE_MAX, required=True)
    description = domain.text(description, "description", "说明", 4000) or title
    category = domain.text(category, "category", "类别", 64)
    compound_id = domain.ident(compound_id, "compound_id", "小区", required=False)
    key = domain.text(idempotency_key, "idempotency_key", "幂等键", 200) or title
    doc = get_meeting(meeting_id, uow)
    item = next((i for i in doc.agenda if i.id == item_id), None)
    if item is None:
        raise NotFound(f"未找到该议题 (no agenda item {item_id!r} on this meeting)", field="item_id")
    action_id = domain.action_id_for(meeting_id, item_id, key)
    if any(a.id == action_id for a in item.actions):
        return doc  # opened already (a retry)
    domain.check_action(item.decision.outcome if item.decision else None, len(item.actions))
    point: tuple[float, float] | None = None
    address = doc.place
    if not compound_id:
        if doc.place_kind != "station":
            raise InvalidArgument(
                "线上会议的跟进事项须指定小区 (compound_id: an online meeting's action item needs a compound)",
                field="compound_id",
            )
        station = peers.station(doc.station_id)
        if station.lat is None or station.lon is None:
            raise InvalidArgument(
                "网格驿站没有坐标，请指定小区 (compound_id: the grid station has no point; name a compound)",
                field="compound_id",
            )
        point = (station.lat, station.lon)
    issue_id = peers.create_issue(
        title=title,
        description=f"{description}\n（{doc.title}：{item.title}）",
        category=category,
        compound_id=compound_id,
        point=point,
        address=address,
        idempotency_key=domain.action_issue_key(meeting_id, item_id, action_id),
        origin=domain.origin_of(meeting_id),
    )

    def mutate(d: MeetingDoc, at: datetime) -> bool:
        it = next(i for i in d.agenda if i.id == item_id)
        if any(a.id == action_id for a in it.actions):
            return False
        it.actions.append(
            ActionDoc(
                id=action_id,
                title=title,
                description=description,
                category=category,
                kind="issue",
                target_id=issue_id,
                opened_at=at,
                by=p.sub,
            )
        )
        d.record(
            ev.ActionItemOpened(
                meeting_id=d.id,
                tenant=require_tenant(),
                community_id=d.community_id,
                item_id=item_id,
                action_id=action_id,
                kind="issue",
                target_id=issue_id,
                at=_ts(at),
            ),
            subject=_subject(d.id),
            at=at,
        )
        return True

    return _change(meeting_id, mutate, uow, utcnow)


# ---------------------------------------------------------------- read side


def list_meetings(community_id: str, when: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    p = _caller()
    domain.require_staff(p.role, "list meetings")
    asked = community.list_filter(community_id.strip(), p)
    return readmodel.list_meetings(asked, when.strip(), page_size, page_token, utcnow())


def list_attendance(
    unit_id: str, person_id: str, community_id: str, page_size: int, page_token: str
) -> tuple[list[Any], str]:
    p = _caller()
    unit_id, person_id = unit_id.strip(), person_id.strip()
    if p.role == domain.MEMBER and p.responder is not None:
        kind, rid = p.responder
        if (unit_id or person_id) and _responder_key(p) not in (f"member_unit:{unit_id}", f"person:{person_id}"):
            raise PermissionDenied(
                "成员只能查看本单位/本人的出席记录 (a member reads its own)", reason="not_your_responder"
            )
        unit_id, person_id = (rid, "") if kind == domain.UNIT else ("", rid)
        asked = community_id.strip()
    else:
        domain.require_staff(p.role, "read attendance")
        asked = community.list_filter(community_id.strip(), p)
    return readmodel.list_attendance(unit_id, person_id, asked, page_size, page_token)


def hot_topics(community_id: str, days: int) -> dict[str, object]:
    p = _caller()
    domain.require_staff(p.role, "read hot topics")
    days = days or 30
    if not 1 <= days <= 90:
        raise InvalidArgument("days 应为1..90 (days must be 1..90)", field="days")
    asked = community.list_filter(community_id.strip(), p)
    today = rollups.today()
    first = today - timedelta(days=days - 1)
    before_first, before_last = first - timedelta(days=days), first - timedelta(days=1)
    now_counts = peers.topic_counts(asked, first, today)
    then_counts = peers.topic_counts(asked, before_first, before_last)
    categories = domain.rank_topics(now_counts.get("category", {}), then_counts.get("category", {}), HOT_LIMIT)
    grids = domain.rank_topics(now_counts.get("grid", {}), then_counts.get("grid", {}), HOT_LIMIT)
    names = peers.category_names() if categories else {}
    return {
        "community_id": asked,
        "days": days,
        "from_day": first,
        "to_day": today,
        "categories": [(t, names.get(t.code, t.code)) for t in categories],
        "grids": [(t, peers.grid_name(t.code)) for t in grids],
    }


def day_iso(d: date) -> str:
    return d.isoformat()
