"""Co-building activities (参与共建): the plain rules of sign-up, waiting list, withdrawal and attendance.

An activity's participants are one list in arrival order (`seq`). A sign-up takes a place while places are
left, else joins the waiting list; a withdrawal of a place promotes the first waiting (lowest seq), in the same
change, so a promotion happens exactly once. Positions on the waiting list are 1, 2, … in arrival order. A withdrawal
is possible only before the start and before attendance is recorded (a met duty is never taken back).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.alliance.posts.domain import CHECKIN_EARLY, Who, hours, utc
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

KINDS = ("cleanup", "health_fair", "festival", "safety_drill", "other")
PLACED, WAITING, WITHDRAWN = "placed", "waiting", "withdrawn"
ACTIVE = (PLACED, WAITING)
MAX_CAPACITY = 1000
MAX_HOURS = 24 * 3


@dataclass
class Entry:
    """One participant as the rules see it (the document's embedded entry mirrors it)."""

    key: str
    unit_id: str
    person_id: str
    status: str
    seq: int
    signed_up_at: datetime
    promoted_at: datetime | None = None
    withdrawn_at: datetime | None = None
    attended: bool = False
    hours: float = 0.0
    attended_at: datetime | None = None
    by: str = ""
    recorded_by: str = ""


@dataclass
class Outcome:
    entry: Entry
    promoted: list[Entry] = field(default_factory=list)
    was: str = ""  # a withdrawal: the entry's status before (placed | waiting)


def check_times(starts_at: datetime | None, ends_at: datetime | None, deadline: datetime | None, now: datetime) -> None:
    if starts_at is None:
        raise InvalidArgument("starts_at is required (必填)", field="starts_at")
    if ends_at is None:
        raise InvalidArgument("ends_at is required (必填)", field="ends_at")
    if utc(ends_at) <= utc(starts_at):
        raise InvalidArgument("ends_at must be after starts_at (结束时间须晚于开始时间)", field="ends_at")
    if utc(ends_at) - utc(starts_at) > timedelta(hours=MAX_HOURS):
        raise InvalidArgument(f"an activity lasts at most {MAX_HOURS} hours (活动时长过长)", field="ends_at")
    if utc(ends_at) <= now:
        raise InvalidArgument("the activity would already be over (活动结束时间已过)", field="ends_at")
    if deadline is not None and utc(deadline) > utc(starts_at):
        raise InvalidArgument(
            "signup_deadline must not be after starts_at (报名截止须不晚于开始)", field="signup_deadline"
        )


def check_kind(kind: str) -> str:
    k = (kind or "").strip() or "other"
    if k not in KINDS:
        raise InvalidArgument(
            f"kind must be one of {', '.join(KINDS)} (活动类型：清洁、义诊、节庆、演练或其他)", field="kind"
        )
    return k


def check_capacity(capacity: int) -> int:
    if not 1 <= capacity <= MAX_CAPACITY:
        raise InvalidArgument(f"capacity must be 1..{MAX_CAPACITY} (名额须为1至{MAX_CAPACITY})", field="capacity")
    return capacity


def active(entries: Sequence[Entry], key: str) -> Entry | None:
    return next((e for e in entries if e.key == key and e.status in ACTIVE), None)


def waiting(entries: Sequence[Entry]) -> list[Entry]:
    return sorted((e for e in entries if e.status == WAITING), key=lambda e: e.seq)


def position(entries: Sequence[Entry], entry: Entry) -> int:
    if entry.status != WAITING:
        return 0
    return 1 + [e.key for e in waiting(entries)].index(entry.key)


def signup_number(entries: Sequence[Entry], entry: Entry) -> int:
    """Which of the participant's sign-ups to this activity the entry is: 1, then 2 after a withdrawal and a new
    sign-up … (evaluation keeps one duty fact per sign-up: a withdrawn one is not expected, a new one is)."""
    return 1 + sum(1 for e in entries if e.key == entry.key and e.seq < entry.seq)


def placed(entries: Sequence[Entry]) -> int:
    return sum(1 for e in entries if e.status == PLACED)


def sign_up(entries: list[Entry], who: Who, capacity: int, deadline: datetime, now: datetime, by: str) -> Outcome:
    if now > utc(deadline):
        raise FailedPrecondition("sign-up has closed (报名已截止)", field="activity_id", reason="signup_closed")
    if active(entries, who.key) is not None:
        raise AlreadyExists(
            "already signed up for this activity (已报名该活动)", field="participant", reason="already_signed_up"
        )
    status = PLACED if placed(entries) < capacity else WAITING
    seq = max((e.seq for e in entries), default=0) + 1
    entry = Entry(who.key, who.unit_id, who.person_id, status, seq, now, by=by)
    entries.append(entry)
    return Outcome(entry)


def withdraw(entries: list[Entry], who: Who, capacity: int, starts_at: datetime, now: datetime) -> Outcome:
    entry = active(entries, who.key)
    if entry is None:
        raise NotFound("not signed up for this activity (未报名该活动)", field="participant")
    if now >= utc(starts_at):
        raise FailedPrecondition("the activity has started: withdraw before (活动已开始，无法退出)", reason="started")
    if entry.attended:  # checked in early (from 30 minutes before the start): the duty is met, not withdrawn
        raise FailedPrecondition(
            "attendance is already recorded: it cannot be withdrawn (已记录参加，无法退出)",
            field="participant",
            reason="already_attended",
        )
    was = entry.status
    entry.status = WITHDRAWN
    entry.withdrawn_at = now
    promoted: list[Entry] = []
    if was == PLACED:
        for nxt in waiting(entries)[: max(0, capacity - placed(entries))]:
            nxt.status = PLACED
            nxt.promoted_at = now
            promoted.append(nxt)
    return Outcome(entry, promoted, was)


def attend(
    entries: list[Entry],
    who: Who,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    *,
    by_worker: bool,
    asked_hours: float,
    by: str,
) -> Entry:
    entry = active(entries, who.key)
    if entry is None or entry.status != PLACED:
        raise FailedPrecondition(
            "only someone with a place attends: not signed up, or still waiting (未获得名额，无法记录参加)",
            field="participant",
            reason="no_place",
        )
    if entry.attended:
        raise AlreadyExists("attendance already recorded (已记录参加)", field="participant", reason="already_attended")
    length = hours(starts_at, ends_at)
    if by_worker:
        if now < utc(starts_at) - CHECKIN_EARLY:
            raise FailedPrecondition("the activity has not started yet (活动尚未开始)", reason="too_early")
        if asked_hours < 0 or asked_hours > length:
            raise InvalidArgument(
                f"hours must be 0..{length}, the activity's length (时长不得超过活动时长)", field="hours"
            )
        credited = asked_hours or length
    else:
        if not utc(starts_at) - CHECKIN_EARLY <= now <= utc(ends_at):
            raise FailedPrecondition(
                "check in while the activity runs (from 30 minutes before its start) (请在活动期间签到)",
                reason="outside_window",
            )
        credited = length
    entry.attended = True
    entry.hours = round(credited, 2)
    entry.attended_at = now
    entry.recorded_by = by if by_worker else "self"
    return entry
