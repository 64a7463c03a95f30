"""What a publication says: the content every channel renders (the contract between the builders and the
channels), and the registry of kinds.

A builder (monthly/, boards/, reports/) makes a content dict from the SQL read side, evaluation's measures and
org's public names; the lifecycle (lifecycle/) stores it as canonical JSON in an immutable version; the
channels (channels/) render that JSON, and only that, into every format. So what a channel can show is what
a content field holds, and every field here is public by construction:

- no free text a resident typed (titles, descriptions, comments), no resident's name, phone, ID number or
  address: an issue is shown by its public reference, category, grid and dates;
- free text a worker typed for the public (a meeting's title, an agenda item) passes through `redact`
  (services/publication/redaction.py) on its way in;
- a member unit, volunteer, party member or team appears by the name they agreed to show (org's
  `public_name`; without one a person appears by surname and a mask, "张**").

Amounts are integers in fen (分); rates are fractions 0..1 (None: no facts); dates are Asia/Shanghai
"YYYY-MM-DD"; `as_of` is the period's end (never the wall clock, so regenerating an unchanged period gives
byte-identical content and outputs). Every code has its Chinese label beside it (`*_zh`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

SCHEMA = 1
KINDS = ("monthly", "boards", "report")
KIND_ZH = {"monthly": "月度公示", "boards": "季度先锋榜", "report": "月度报告"}


# ---------------------------------------------------------------- shared parts


class Anchor(TypedDict):
    """The audit log's head at the period's end (services/common/audit.py), signed with the audit key."""

    seq: int
    hash: str
    at: str  # RFC 3339 UTC
    signature: str  # base64 Ed25519 over "hongling-audit-checkpoint:<seq>:<hash>"
    public_key: str  # base64


class Rate(TypedDict):
    key: str  # response | resolution | satisfaction | on_time | reopen | whistle | duties
    name_zh: str
    name_en: str
    numerator: float
    denominator: float
    rate: float | None  # None: no facts in the period
    lower_is_better: bool


class Header(TypedDict):
    schema: int  # SCHEMA
    kind: str  # monthly | boards | report
    tenant: str
    tenant_name_zh: str
    scope: str  # a community id, or "*"
    scope_name_zh: str  # the community's name, or the subdistrict's
    period: str  # "2026-11" | "2026Q4"
    period_zh: str  # "2026年11月" | "2026年第四季度"
    as_of: str  # the period's end, RFC 3339 with +08:00
    title_zh: str
    title_en: str


# ---------------------------------------------------------------- monthly (一月一公示), one community


class IssueLine(TypedDict):
    ref: str  # the issue's public reference (its id; never its text)
    category: str
    category_zh: str
    grid_zh: str  # the grid's name (never an address)
    call_type: str  # service | tackling | emergency | "" (not whistled)
    call_type_zh: str
    received_on: str  # YYYY-MM-DD
    done_on: str | None
    status: str  # received | whistled | in_progress | done | verified | rated | closed | declined ...
    status_zh: str
    handled_by: list[str]  # public names of the crew's units, teams and people
    verification: str  # passed | failed | pending | "" (not yet done)
    verification_zh: str
    rating: int | None  # 1..5, the reporter's rating
    overdue: bool


class WhistleLine(TypedDict):
    ref: str  # the whistle's id
    blown_on: str  # YYYY-MM-DD
    call_type: str
    call_type_zh: str
    category_zh: str
    answered_in_time: list[str]  # public names of the units that reported in within the deadline
    answered_late: list[str]
    not_answered: list[str]


class Decision(TypedDict):
    item_zh: str  # the agenda item's title (redacted)
    decision: str  # agreed | rejected | deferred | "" (undecided)
    decision_zh: str
    votes: str  # "赞成 7 · 反对 1 · 弃权 0", or ""
    actions: int  # action items made from it (issues or tasks)


class MeetingLine(TypedDict):
    ref: str
    held_on: str
    title_zh: str  # redacted
    place_zh: str  # a grid station's name or 线上 (redacted)
    invited: int
    on_time: int
    late: int
    excused: int
    absent: int
    decisions: list[Decision]


class ProblemOfMonth(TypedDict):
    """每月一题: the topic that recurred most in the month's intake, and what was done about it."""

    topic_zh: str  # e.g. "环境卫生 · 第三网格"
    category: str
    category_zh: str
    grid_zh: str
    issues: int  # how many issues of it in the month
    handled: int  # of which handled (done or beyond)
    actions_zh: list[str]  # what was done: meeting decisions on it, tasks (public wording)


class FundLine(TypedDict):
    fund: str
    fund_zh: str
    opening_fen: int
    allocated_fen: int
    spent_fen: int
    closing_fen: int


class MonthlySummary(TypedDict):
    issues_received: int
    issues_handled: int  # done, verified or rated in the month
    verified: int
    verification_failed: int
    rated: int
    rating_average: float | None  # 1..5
    whistles: int
    meetings: int
    overdue: int


class MonthlyContent(Header):
    summary: MonthlySummary
    issues: list[IssueLine]  # received or handled in the month, oldest first, then by ref
    whistles: list[WhistleLine]
    meetings: list[MeetingLine]
    problem_of_month: ProblemOfMonth | None
    funds: list[FundLine]
    measures: list[Rate]  # the community's month from evaluation
    audit_anchor: Anchor


# ---------------------------------------------------------------- boards (四榜), a community or the tenant


class Explanation(TypedDict):
    key: str  # the measure
    name_zh: str
    numerator: float
    denominator: float
    mean: float  # the board's pooled mean
    shrunk: float  # the Bayesian average
    weight: float
    points: float


class BoardEntryLine(TypedDict):
    rank: int
    subject_kind: str  # member_unit | person
    name: str  # the name the entrant agreed to show
    score: float
    workload: int
    explanation: list[Explanation]


class BoardLine(TypedDict):
    kind: str  # red_property | social_org | party_member | volunteer
    title_zh: str  # 红色物业光荣榜 …
    title_en: str
    entries: list[BoardEntryLine]


class Formula(TypedDict):
    version: str  # "2026-1"
    text_zh: str  # the formula in words
    text_en: str
    k: float
    weights: dict[str, float]


class BoardsContent(Header):
    evaluation_version: int  # the board set's version at evaluation (BoardsFrozen)
    evaluation_changes: str  # evaluation's readable diff for a correction, "" for the first
    formula: Formula
    boards: list[BoardLine]


# ---------------------------------------------------------------- report upward, one subdistrict


class Ranking(TypedDict):
    rank: int
    community_id: str
    community_name_zh: str
    composite: float | None
    issues_handled: int
    rates: list[Rate]


class OverdueTask(TypedDict):
    community_name_zh: str
    ref: str
    category_zh: str
    due_on: str
    days_overdue: int


class FailedVerification(TypedDict):
    community_name_zh: str
    ref: str
    category_zh: str
    failed_on: str
    method_zh: str  # 集中评议 | 现场核验 | 居民否决


class SilentUnit(TypedDict):
    community_name_zh: str
    name: str  # the unit's public name
    whistles: int  # calls it was named in
    answered: int
    missed: int


class Exceptions(TypedDict):
    overdue_tasks: list[OverdueTask]
    failed_verifications: list[FailedVerification]
    silent_units: list[SilentUnit]


class LedgerReason(TypedDict):
    reason: str  # e.g. assessment_task_refused, rejected, narrowed
    reason_zh: str
    count: int


class LedgerLine(TypedDict):
    """减负: what district departments asked of one community in the month (from the audit log)."""

    community_id: str
    community_name_zh: str
    data_requests: int  # filed requests for data
    assistance_tasks: int  # filed requests to push tasks
    approved: int
    narrowed: int  # approved with less than asked
    rejected: int  # by the district approver
    refused: int  # refused outright (assessment tasks 考核任务 among them)
    assessment_refused: int
    quota_granted: int
    quota_used: int
    reasons: list[LedgerReason]


class ReportContent(Header):
    measures: list[Rate]  # the subdistrict's month
    rankings: list[Ranking]
    exceptions: Exceptions
    ledger: list[LedgerLine]
    audit_anchor: Anchor


Content = MonthlyContent | BoardsContent | ReportContent


# ---------------------------------------------------------------- canonical form


def canonical(content: Mapping[str, Any]) -> str:
    """The stored form: JSON with sorted keys, no insignificant spaces, UTF-8 characters as they are."""
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


# ---------------------------------------------------------------- the kinds' registry


@dataclass(frozen=True)
class Kind:
    """What the lifecycle needs of a kind: its checks and its builder (registered by its area)."""

    name: Literal["monthly", "boards", "report"]
    channels: tuple[str, ...]
    # (scope, period) -> None, or services.common.errors.InvalidArgument naming the field
    check: Callable[[str, str], None]
    # (tenant, scope, period) -> the content (deterministic: the same sources give the same dict)
    build: Callable[[str, str, str], Mapping[str, Any]]
    anchored: bool  # carries the audit log's head at the period's end


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    _KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> Kind:
    """The registered kind, or KeyError."""
    return _KINDS[name]


def registered() -> dict[str, Kind]:
    return dict(_KINDS)


__all__ = [
    "KINDS",
    "SCHEMA",
    "Anchor",
    "BoardsContent",
    "Content",
    "Kind",
    "MonthlyContent",
    "NotRequired",
    "ReportContent",
    "canonical",
    "kind_of",
    "register",
    "registered",
    "sha256",
]
