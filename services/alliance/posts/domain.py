"""Standing posts (认领岗位): the plain rules, no storage.

- A post has shifts (one-off, or generated from a weekly pattern for the coming weeks, Asia/Shanghai); each
  shift has a start, an end and a capacity (places).
- A claimant is a member unit (attending through a person) or a person; its key in a shift or an activity is the
  person who attends ("person:<id>"), or the unit when it names nobody ("member_unit:<id>").
- Check-in opens CHECKIN_EARLY before the start and closes at the end; after the start + GRACE it is late.
  Served hours are the shift's length.
- A claim is released only before its shift starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.common.errors import FailedPrecondition, InvalidArgument

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHECKIN_EARLY = timedelta(minutes=30)
GRACE = timedelta(minutes=10)
MAX_CAPACITY = 500
MAX_SHIFTS = 400  # per post
MAX_SHIFT_HOURS = 24
MAX_WEEKS = 12
MAX_NAME = 60
MAX_DESCRIPTION = 2000
PLACE_KINDS = ("grid", "compound", "grid_station", "other")
CLAIMANT_KINDS = ("member_unit", "person")
KIND_ALIASES = {"unit": "member_unit"}

# Claim statuses
CLAIMED, RELEASED, SERVED, MISSED = "claimed", "released", "served", "missed"
HOLDING = (CLAIMED, SERVED, MISSED)  # a claim that holds its place


def aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def utc(at: datetime) -> datetime:
    found = aware(at)
    assert found is not None
    return found.astimezone(UTC)


@dataclass(frozen=True)
class NewShift:
    starts_at: datetime
    ends_at: datetime
    capacity: int


@dataclass(frozen=True)
class Pattern:
    weekdays: Sequence[int]  # 1 = Monday … 7 = Sunday
    start_time: str  # HH:MM, Asia/Shanghai
    end_time: str
    capacity: int
    weeks: int
    from_date: str = ""  # YYYY-MM-DD, Asia/Shanghai; "" = today


@dataclass(frozen=True)
class Who:
    """Who claims or signs up: the key that makes a second claim a double, and the unit and person."""

    key: str
    unit_id: str
    person_id: str


def text(value: str, field: str, limit: int, *, required: bool = True) -> str:
    v = (value or "").strip()
    if required and not v:
        raise InvalidArgument(f"{field} is required (必填)", field=field)
    if len(v) > limit:
        raise InvalidArgument(f"{field} is at most {limit} characters (不超过{limit}字)", field=field)
    if any(ord(c) < 32 and c not in "\n\t" for c in v):
        raise InvalidArgument(f"{field} holds a control character (含有控制字符)", field=field)
    return v


def place(kind: str, ident: str, name: str, field: str = "place") -> tuple[str, str, str]:
    k = (kind or "").strip() or "other"
    if k not in PLACE_KINDS:
        raise InvalidArgument(
            f"{field}.kind must be one of {', '.join(PLACE_KINDS)} (地点类型：网格、小区、网格驿站或其他)",
            field=f"{field}.kind",
        )
    i = text(ident, f"{field}.id", 120, required=k != "other")
    n = text(name, f"{field}.name", 120, required=False)
    return k, i, n or i


def who(kind: str, ident: str, person_id: str, field: str = "claimant") -> Who:
    """The claimant as a key: a person attends as themselves; a unit through the person it names."""
    k = KIND_ALIASES.get((kind or "").strip(), (kind or "").strip())
    i = (ident or "").strip()
    p = (person_id or "").strip()
    if k not in CLAIMANT_KINDS:
        raise InvalidArgument(
            f"{field}.kind must be member_unit or person (认领者须为成员单位或个人)", field=f"{field}.kind"
        )
    if not i or len(i) > 120 or any(c.isspace() for c in i):
        raise InvalidArgument(f"{field}.id is required, without spaces (必填)", field=f"{field}.id")
    if len(p) > 120 or any(c.isspace() for c in p):
        raise InvalidArgument("person_id must not hold spaces (人员编号有误)", field="person_id")
    if k == "person":
        if p and p != i:
            raise InvalidArgument(
                "person_id goes only with a unit: a person attends as themselves (个人认领无需另填人员)",
                field="person_id",
            )
        return Who(f"person:{i}", "", i)
    if not p:
        raise InvalidArgument(
            "person_id is required for a unit: the person who attends for it (请填写代表单位出勤的人员)",
            field="person_id",
        )
    return Who(f"person:{p}", i, p)


def shift(starts_at: datetime | None, ends_at: datetime | None, capacity: int, now: datetime, field: str) -> NewShift:
    if starts_at is None:
        raise InvalidArgument(f"{field}.starts_at is required (必填)", field=f"{field}.starts_at")
    if ends_at is None:
        raise InvalidArgument(f"{field}.ends_at is required (必填)", field=f"{field}.ends_at")
    s, e = utc(starts_at), utc(ends_at)
    if e <= s:
        raise InvalidArgument(
            f"{field}.ends_at must be after starts_at (结束时间须晚于开始时间)", field=f"{field}.ends_at"
        )
    if e - s > timedelta(hours=MAX_SHIFT_HOURS):
        raise InvalidArgument(
            f"{field}: a shift lasts at most {MAX_SHIFT_HOURS} hours (每班不超过{MAX_SHIFT_HOURS}小时)",
            field=f"{field}.ends_at",
        )
    if e <= now:
        raise InvalidArgument(f"{field} has already ended (该班次已结束)", field=f"{field}.ends_at")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise InvalidArgument(
            f"{field}.capacity must be 1..{MAX_CAPACITY} (名额须为1至{MAX_CAPACITY})", field=f"{field}.capacity"
        )
    return NewShift(s, e, capacity)


def _hhmm(value: str, field: str) -> time:
    try:
        h, m = (value or "").strip().split(":")
        return time(int(h), int(m))
    except ValueError:
        raise InvalidArgument(f"{field} must be HH:MM, e.g. 08:30 (时间格式为 时:分)", field=field) from None


def weekly(p: Pattern, now: datetime) -> list[NewShift]:
    """The pattern's concrete shifts (Asia/Shanghai wall times, stored UTC) from its first day for its weeks; shifts
    already over are left out."""
    f = "pattern"
    days = sorted(set(p.weekdays))
    if not days or any(d < 1 or d > 7 for d in days):
        raise InvalidArgument(
            f"{f}.weekdays: 1 (Monday) … 7 (Sunday), at least one (请选择星期)", field=f"{f}.weekdays"
        )
    if not 1 <= p.weeks <= MAX_WEEKS:
        raise InvalidArgument(f"{f}.weeks must be 1..{MAX_WEEKS} (周数须为1至{MAX_WEEKS})", field=f"{f}.weeks")
    start, end = _hhmm(p.start_time, f"{f}.start_time"), _hhmm(p.end_time, f"{f}.end_time")
    if end <= start:
        raise InvalidArgument(f"{f}.end_time must be after start_time (结束时间须晚于开始时间)", field=f"{f}.end_time")
    if p.from_date.strip():
        try:
            first = date.fromisoformat(p.from_date.strip())
        except ValueError:
            raise InvalidArgument(f"{f}.from_date must be YYYY-MM-DD (日期格式有误)", field=f"{f}.from_date") from None
    else:
        first = now.astimezone(SHANGHAI).date()
    out: list[NewShift] = []
    for offset in range(p.weeks * 7):
        day = first + timedelta(days=offset)
        if day.isoweekday() not in days:
            continue
        s = datetime.combine(day, start, SHANGHAI).astimezone(UTC)
        e = datetime.combine(day, end, SHANGHAI).astimezone(UTC)
        if e <= now:
            continue
        out.append(shift(s, e, p.capacity, now, f))
    return out


def check_total(existing: int, adding: int) -> None:
    if adding == 0:
        raise InvalidArgument("give shifts or a weekly pattern (请至少设置一个班次)", field="shifts")
    if existing + adding > MAX_SHIFTS:
        raise InvalidArgument(
            f"a post has at most {MAX_SHIFTS} shifts; {existing} exist (每个岗位最多{MAX_SHIFTS}个班次)", field="shifts"
        )


def hours(starts_at: datetime, ends_at: datetime) -> float:
    return round((utc(ends_at) - utc(starts_at)).total_seconds() / 3600.0, 2)


def check_claimable(starts_at: datetime, now: datetime) -> None:
    if now >= utc(starts_at):
        raise FailedPrecondition(
            "this shift has already started: claim another (班次已开始，无法认领)",
            field="shift_id",
            reason="shift_started",
        )


def check_in(status: str, starts_at: datetime, ends_at: datetime, now: datetime, *, by_worker: bool) -> bool:
    """Whether a check-in now is late; FailedPrecondition when it cannot be made. A person checks in from
    CHECKIN_EARLY before the start until the end; a worker confirms from then on, also after the end (until the
    shift's timer recorded it missed)."""
    if status == SERVED:
        raise FailedPrecondition("already checked in (已签到)", field="claim_id", reason="already_served")
    if status != CLAIMED:
        raise FailedPrecondition(
            f"this claim is {status}: nothing to check in (该认领已{status_zh(status)}，无法签到)",
            field="claim_id",
            reason=f"claim_{status}",
        )
    s, e = utc(starts_at), utc(ends_at)
    if now < s - CHECKIN_EARLY:
        raise FailedPrecondition(
            "check-in opens 30 minutes before the shift starts (班次开始前30分钟起方可签到)",
            field="claim_id",
            reason="too_early",
        )
    if now > e and not by_worker:
        raise FailedPrecondition(
            "the shift is over: ask the community worker to confirm (班次已结束，请联系社区工作者确认)",
            field="claim_id",
            reason="too_late",
        )
    return s + GRACE < now <= e


def check_release(status: str, starts_at: datetime, now: datetime) -> None:
    if status != CLAIMED:
        raise FailedPrecondition(
            f"this claim is {status}: it cannot be released (该认领已{status_zh(status)}，无法取消)",
            field="claim_id",
            reason=f"claim_{status}",
        )
    if now >= utc(starts_at):
        raise FailedPrecondition(
            "the shift has started: a claim is released only before (班次已开始，无法取消认领)",
            field="claim_id",
            reason="shift_started",
        )


def status_zh(status: str) -> str:
    return {CLAIMED: "认领", RELEASED: "取消", SERVED: "签到", MISSED: "缺勤"}.get(status, status)


def week_of(at: datetime) -> date:
    """The Monday (Asia/Shanghai) of the week `at` falls in."""
    day = utc(at).astimezone(SHANGHAI).date()
    return day - timedelta(days=day.weekday())
