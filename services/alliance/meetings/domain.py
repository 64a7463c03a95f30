"""Joint meetings (共商共议共决): the rules, in plain Python (no database, no gRPC).

- A meeting is scheduled for one community: a title, a start (and an end, or the start + 3 h), a place (a grid
  station of the community, or online with an https link), the invited member units and people, an agenda.
- Attendance per invitee: on_time | late | excused (请假) | absent. A check-in by the person themselves is on
  time until the start + the tenant's grace (default 10 min), late after; it opens an hour before the start.
  When the meeting ends everyone invited without a record is recorded absent (`absentees`).
- Every agenda item ends with a decision: agreed | rejected | deferred, with votes where voted (`check_decision`:
  counts never negative, never more votes than invitees; a voted item is agreed only with more votes for
  than against, rejected only without). A meeting is minuted only once it ended and every item has a decision.
- Hot topics (每月一题): categories and grids ranked by issues in the window, then by growth (`rank_topics`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.common.errors import FailedPrecondition, PermissionDenied
from services.common.validate import bad, ident, text

# Meeting statuses.
SCHEDULED, CANCELLED, ENDED, MINUTED = "scheduled", "cancelled", "ended", "minuted"
STATUS_ZH = {SCHEDULED: "已安排", CANCELLED: "已取消", ENDED: "已结束待决议", MINUTED: "已形成纪要"}
# Attendance.
ON_TIME, LATE, EXCUSED, ABSENT = "on_time", "late", "excused", "absent"
ATTENDANCE = (ON_TIME, LATE, EXCUSED, ABSENT)
ATTENDANCE_ZH = {ON_TIME: "按时参会", LATE: "迟到", EXCUSED: "请假", ABSENT: "缺席"}
# Decisions.
AGREED, REJECTED, DEFERRED = "agreed", "rejected", "deferred"
OUTCOMES = (AGREED, REJECTED, DEFERRED)
OUTCOME_ZH = {AGREED: "通过", REJECTED: "未通过", DEFERRED: "暂缓"}
# Agenda item sources.
SOURCES = ("issue", "proposal", "hot_topic", "other")
SOURCE_ZH = {"issue": "民情事项", "proposal": "成员提议", "hot_topic": "每月一题", "other": "其他"}
UNIT, PERSON = "member_unit", "person"
INVITEE_KINDS = (UNIT, PERSON)
ISSUE_DUPLICATE = "duplicate"

TITLE_MAX = 120
NOTE_MAX = 1000
REASON_MAX = 500
LINK_MAX = 500
MAX_INVITEES = 200
MAX_AGENDA = 30
MAX_ACTIONS = 20
DEFAULT_GRACE_MINUTES = 10
DEFAULT_LENGTH = timedelta(hours=3)
LONGEST = timedelta(hours=12)
CHECK_IN_OPENS = timedelta(hours=1)
# A meeting may be entered after it was held (the same day's): its start at most this long ago.
PAST_START_MAX = timedelta(hours=24)
FUTURE_START_MAX = timedelta(days=366)
ID_NAMESPACE = uuid.UUID("6c1f7f0e-2d8b-4f53-9a8e-5d0b7f3c2a11")

STAFF = frozenset({"community_worker", "subdistrict_admin"})
MEMBER = "member"


def require_staff(role: str | None, what: str) -> None:
    if role not in STAFF:
        raise PermissionDenied(
            f"role {role or 'none'!r} may not {what} (仅社区工作者或街道管理员可操作; allowed: community_worker, "
            "subdistrict_admin)",
            reason="role_not_allowed",
        )


def new_meeting_id(idempotency_key: str = "", by: str = "") -> str:
    if idempotency_key:
        return uuid.uuid5(ID_NAMESPACE, f"{by}:{idempotency_key}").hex
    return uuid.uuid4().hex


def new_item_id() -> str:
    return uuid.uuid4().hex[:12]


def action_id_for(meeting_id: str, item_id: str, key: str) -> str:
    """An action item's id, stable for its meeting, item and the caller's key (or title): a retry finds it."""
    return uuid.uuid5(ID_NAMESPACE, f"action:{meeting_id}:{item_id}:{key}").hex[:16]


def action_issue_key(meeting_id: str, item_id: str, action_id: str) -> str:
    """The idempotency key of an action item's issue at intake: one issue per meeting, item and action."""
    return f"alliance-meeting:{meeting_id}:{item_id}:{action_id}"


def origin_of(meeting_id: str) -> str:
    return f"meeting:{meeting_id}"


# ---------------------------------------------------------------- scheduling


@dataclass(frozen=True)
class Invitee:
    kind: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class AgendaIn:
    title: str
    source: str
    issue_id: str = ""
    note: str = ""


@dataclass(frozen=True)
class NewMeeting:
    community_id: str
    title: str
    starts_at: datetime
    ends_at: datetime | None
    station_id: str
    online: bool
    online_link: str
    invitees: tuple[Invitee, ...]
    agenda: tuple[AgendaIn, ...] = field(default_factory=tuple)


def check_agenda_item(item: AgendaIn, where: str) -> AgendaIn:
    source = (item.source or "other").strip()
    # An item of source issue may leave its title out: the issue's title is kept as its snapshot.
    title = text(item.title, f"{where}.title", "议题", TITLE_MAX, required=source != "issue")
    if source not in SOURCES or source == "proposal":
        raise bad(f"{where}.source", "议题来源应为 issue、hot_topic 或 other", "must be issue, hot_topic or other")
    issue_id = ident(item.issue_id, f"{where}.issue_id", "事项", required=source == "issue")
    if source != "issue" and issue_id:
        raise bad(f"{where}.issue_id", "仅来源为民情事项的议题可关联事项", "only an item of source issue names one")
    return AgendaIn(title, source, issue_id, text(item.note, f"{where}.note", "说明", NOTE_MAX))


def check_new_meeting(
    *,
    community_id: str,
    title: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
    station_id: str,
    online: bool,
    online_link: str,
    invitees: Sequence[tuple[str, str]],
    agenda: Sequence[AgendaIn],
    now: datetime,
) -> NewMeeting:
    """A meeting to schedule, checked; InvalidArgument naming the first field that is wrong."""
    community_id = ident(community_id, "community_id", "社区")
    title = text(title, "title", "会议名称", TITLE_MAX, required=True)
    if starts_at is None:
        raise bad("starts_at", "请填写开始时间", "is required")
    if starts_at < now - PAST_START_MAX:
        raise bad("starts_at", "开始时间不能早于24小时前", "must be at most 24 hours ago")
    if starts_at > now + FUTURE_START_MAX:
        raise bad("starts_at", "开始时间不能晚于一年后", "must be within a year")
    if ends_at is not None:
        if ends_at <= starts_at:
            raise bad("ends_at", "结束时间须晚于开始时间", "must be after starts_at")
        if ends_at - starts_at > LONGEST:
            raise bad("ends_at", "会议至多12小时", "a meeting lasts at most 12 hours")
    station_id = station_id.strip()
    if online:
        if station_id:
            raise bad("station_id", "线上会议不选网格驿站", "an online meeting has no grid station")
        link = online_link.strip()
        if not link.startswith("https://") or len(link) > LINK_MAX or any(c.isspace() for c in link):
            raise bad("online_link", "线上会议须提供https链接", "an online meeting needs an https:// link")
        online_link = link
    else:
        station_id = ident(station_id, "station_id", "网格驿站")
        if online_link.strip():
            raise bad("online_link", "线下会议不填链接", "only an online meeting has a link")
        online_link = ""
    if not invitees:
        raise bad("invitees", "请至少邀请一个成员单位或个人", "invite at least one member unit or person")
    if len(invitees) > MAX_INVITEES:
        raise bad("invitees", f"至多邀请{MAX_INVITEES}个", f"at most {MAX_INVITEES}")
    seen: set[str] = set()
    checked: list[Invitee] = []
    for n, (kind, iid) in enumerate(invitees):
        k = (kind or "").strip()
        k = UNIT if k == "unit" else k
        if k not in INVITEE_KINDS:
            raise bad(f"invitees[{n}].kind", "受邀类型应为 member_unit 或 person", "must be member_unit or person")
        inv = Invitee(k, ident(iid, f"invitees[{n}].id", "受邀单位/个人"))
        if inv.key in seen:
            raise bad(f"invitees[{n}].id", "重复邀请", "is invited twice")
        seen.add(inv.key)
        checked.append(inv)
    if len(agenda) > MAX_AGENDA:
        raise bad("agenda", f"议题至多{MAX_AGENDA}项", f"at most {MAX_AGENDA} items")
    items = tuple(check_agenda_item(a, f"agenda[{n}]") for n, a in enumerate(agenda))
    return NewMeeting(community_id, title, starts_at, ends_at, station_id, online, online_link, tuple(checked), items)


def closes_at(starts_at: datetime, ends_at: datetime | None) -> datetime:
    """When the meeting's close timer fires: its end, or its start + 3 h."""
    return ends_at if ends_at is not None else starts_at + DEFAULT_LENGTH


def check_cancel(status: str, starts_at: datetime, now: datetime, reason: str) -> str:
    why = text(reason, "reason", "取消原因", REASON_MAX, required=True)
    if status != SCHEDULED:
        raise FailedPrecondition(f"会议{STATUS_ZH.get(status, status)}，不能取消 (the meeting is {status})", field="id")
    if now >= starts_at:
        raise FailedPrecondition("会议已开始，不能取消 (the meeting has started: it cannot be cancelled)", field="id")
    return why


def require_open(status: str, what_zh: str, what_en: str) -> None:
    if status == CANCELLED:
        raise FailedPrecondition(f"会议已取消，不能{what_zh} (the meeting is cancelled: cannot {what_en})", field="id")


# ---------------------------------------------------------------- attendance


def check_in_status(at: datetime, starts_at: datetime, grace_minutes: int) -> str:
    """A check-in's status: on time until the start + grace (inclusive), late after."""
    return ON_TIME if at <= starts_at + timedelta(minutes=grace_minutes) else LATE


def check_check_in(status: str, at: datetime, starts_at: datetime) -> None:
    require_open(status, "签到", "check in")
    if status in (ENDED, MINUTED):
        raise FailedPrecondition(
            "会议已结束，签到已关闭 (the meeting has ended: check-in is closed)", field="meeting_id"
        )
    if at < starts_at - CHECK_IN_OPENS:
        raise FailedPrecondition(
            "签到在会议开始前1小时开放 (check-in opens an hour before the start)", field="meeting_id"
        )


def check_status(value: str) -> str:
    v = (value or "").strip()
    if v not in ATTENDANCE:
        raise bad("status", "出席情况应为 on_time、late、excused 或 absent", "must be on_time, late, excused or absent")
    return v


def absentees(invitees: Iterable[Invitee], recorded: Iterable[str]) -> list[Invitee]:
    """The invitees (in order) without an attendance record (keys as Invitee.key)."""
    have = set(recorded)
    return [i for i in invitees if i.key not in have]


def attendance_counts(invited: int, statuses: Iterable[str]) -> dict[str, int]:
    out = {"invited": invited, ON_TIME: 0, LATE: 0, EXCUSED: 0, ABSENT: 0}
    n = 0
    for s in statuses:
        if s in out:
            out[s] += 1
            n += 1
    out["unrecorded"] = max(0, invited - n)
    return out


# ---------------------------------------------------------------- decisions and closure


@dataclass(frozen=True)
class DecisionIn:
    outcome: str
    voted: bool
    votes_for: int = 0
    votes_against: int = 0
    votes_abstain: int = 0
    note: str = ""


def check_decision(d: DecisionIn, invited: int) -> DecisionIn:
    """The decision, checked against the rules in the module docstring; InvalidArgument naming the field."""
    outcome = (d.outcome or "").strip()
    if outcome not in OUTCOMES:
        raise bad(
            "outcome",
            "决议应为 agreed（通过）、rejected（未通过）或 deferred（暂缓）",
            "must be agreed, rejected or deferred",
        )
    note = text(d.note, "note", "说明", NOTE_MAX)
    votes = {"votes_for": d.votes_for, "votes_against": d.votes_against, "votes_abstain": d.votes_abstain}
    voted = d.voted or any(votes.values())
    for name, n in votes.items():
        if n < 0:
            raise bad(name, "票数不能为负", "must not be negative")
    if voted:
        total = sum(votes.values())
        if total == 0:
            raise bad("votes_for", "表决须有票数", "a vote needs at least one vote")
        if total > invited:
            raise bad("votes_for", f"票数合计{total}超过受邀{invited}个", f"{total} votes exceed the {invited} invited")
        if outcome == AGREED and d.votes_for <= d.votes_against:
            raise bad("outcome", "赞成票未超过反对票，不能通过", "agreed needs more votes for than against")
        if outcome == REJECTED and d.votes_for > d.votes_against:
            raise bad("outcome", "赞成票多于反对票，不能为未通过", "rejected with more votes for than against")
    return DecisionIn(outcome, voted, d.votes_for, d.votes_against, d.votes_abstain, note)


def check_decidable(status: str, decided: bool, *, now: datetime, starts_at: datetime) -> None:
    """An item is decided at the meeting: once it started (not before), while it is not cancelled or minuted."""
    require_open(status, "表决", "decide")
    if status == MINUTED:
        raise FailedPrecondition("会议已形成纪要 (the meeting is minuted)", field="meeting_id")
    if decided:
        raise FailedPrecondition("该议题已有决议 (this item already has a decision)", field="item_id")
    if now < starts_at:
        raise FailedPrecondition(
            "会议尚未开始，不能表决 (the meeting has not started: items are decided from its start)",
            field="meeting_id",
            reason="meeting_not_started",
        )


def issue_closed(status: str, open311_status: str) -> bool:
    """Whether an intake issue is closed for the agenda: intake's own "closed" (its Open311 status: verified,
    published, rated, cancelled, declined) or a duplicate (its original is the one to put on the agenda)."""
    return open311_status == "closed" or status == ISSUE_DUPLICATE


def is_minuted(ended: bool, decided: Sequence[bool]) -> bool:
    """Closed as minutes: the meeting ended and every agenda item has a decision."""
    return ended and all(decided)


def status_after(ended: bool, decided: Sequence[bool]) -> str:
    if not ended:
        return SCHEDULED
    return MINUTED if is_minuted(ended, decided) else ENDED


def check_action(outcome: str | None, count: int) -> None:
    if outcome != AGREED:
        raise FailedPrecondition(
            "仅已通过的议题可立项跟进 (action items follow an agreed decision only)", field="item_id"
        )
    if count >= MAX_ACTIONS:
        raise FailedPrecondition(f"每个议题至多{MAX_ACTIONS}项跟进事项 (at most {MAX_ACTIONS})", field="item_id")


# ---------------------------------------------------------------- hot topics


@dataclass(frozen=True)
class Topic:
    code: str
    count: int
    previous: int

    @property
    def delta(self) -> int:
        return self.count - self.previous


def rank_topics(current: Mapping[str, int], previous: Mapping[str, int], limit: int = 5) -> list[Topic]:
    """The topics with issues in the window, most first, then the fastest growing, then by code."""
    found = [Topic(code, n, int(previous.get(code, 0))) for code, n in current.items() if n > 0]
    found.sort(key=lambda t: (-t.count, -t.delta, t.code))
    return found[:limit]


def topic_summary(name: str, topic: Topic, days: int) -> str:
    """e.g. "楼道照明 12 件，比上月 +5" (上月: the window before; days other than 30 say 前N天)."""
    before = "比上月" if days == 30 else f"比前{days}天"
    sign = "+" if topic.delta >= 0 else ""
    return f"{name} {topic.count} 件，{before} {sign}{topic.delta}"
