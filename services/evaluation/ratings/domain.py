"""评单's rules: plain Python, no infrastructure.

- Verdicts. The area learns what happened to an issue's task only from the verification's events
  (TaskVerified, TaskVerificationFailed). `next_verdict` keeps the latest: a later attempt wins; at the same
  attempt a failure wins over a pass (the resident's rejection of that verification); an older or repeated
  verdict changes nothing, so a replay or a late delivery is harmless.
- Residents' ratings (群众评单). The reporter rates an issue once, 1–5 with an optional comment, after its
  task is verified and within the tenant's rating window (default 30 days after the verification). The
  reporter may instead reject the verified result with a reason within the rejection window (default 7
  days), once per verification: that is a TaskVerificationFailed with method "resident". Rating a
  verification and rejecting it exclude each other (one decision per verification, an insert by its id).
- Unit ratings. A resident representative (居民代表: a person of the community with the org role
  resident_representative, recorded by a community worker) or an alliance member (联盟成员: a `member`
  principal, as its bound unit or person) rates a member unit of the same community, 1–5, once per quarter
  (Asia/Shanghai quarters, "2026Q4"); the current quarter or the one just ended.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied

SHANGHAI = ZoneInfo("Asia/Shanghai")
SCORE_MIN, SCORE_MAX = 1, 5
COMMENT_MAX = 500
REASON_MAX = 500
DEFAULT_RATING_WINDOW_DAYS = 30
DEFAULT_REJECTION_WINDOW_DAYS = 7
RATING_WINDOW_MAX = 365
REJECTION_WINDOW_MAX = 90

VERIFIED = "verified"
FAILED = "failed"
RESIDENT_METHOD = "resident"  # TaskVerificationFailed.method of a reporter's rejection
RATING = "rating"
REJECTION = "rejection"
ACT_KINDS = (RATING, REJECTION)

RATER_REPRESENTATIVE = "resident_representative"  # 居民代表
RATER_MEMBER = "alliance_member"  # 联盟成员
REPRESENTATIVE_ROLE = "resident_representative"  # the org person role (services/org/domain.py ROLES)
STAFF = frozenset({"community_worker", "subdistrict_admin"})
MEMBER = "member"
SETTINGS_WRITERS = frozenset({"subdistrict_admin"})

_QUARTER_RE = re.compile(r"^(\d{4})Q([1-4])$")
_PHONE_LIKE = re.compile(r"\d[\d\s-]{5,}\d")


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Windows:
    rating_days: int = DEFAULT_RATING_WINDOW_DAYS
    rejection_days: int = DEFAULT_REJECTION_WINDOW_DAYS


def check_windows(rating_days: int, rejection_days: int) -> Windows:
    if not 1 <= rating_days <= RATING_WINDOW_MAX:
        raise InvalidArgument(
            f"评价期限应为1..{RATING_WINDOW_MAX}天 (rating_window_days must be 1..{RATING_WINDOW_MAX})",
            field="rating_window_days",
        )
    if not 1 <= rejection_days <= REJECTION_WINDOW_MAX:
        raise InvalidArgument(
            f"退回期限应为1..{REJECTION_WINDOW_MAX}天 (rejection_window_days must be 1..{REJECTION_WINDOW_MAX})",
            field="rejection_window_days",
        )
    return Windows(rating_days, rejection_days)


def require_settings_writer(role: str) -> None:
    if role not in SETTINGS_WRITERS:
        raise PermissionDenied(
            f"仅街道管理员可修改评价设置 (only a subdistrict admin sets the rating windows, not {role})",
            reason="role",
        )


def require_staff(role: str, what: tuple[str, str]) -> None:
    if role not in STAFF | {"service"}:
        raise PermissionDenied(
            f"仅社区工作者或街道管理员可{what[0]} (only staff may {what[1]}, not {role})", reason="role"
        )


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """What the area knows of an issue's task's verification: the latest verdict."""

    verification_id: str
    attempt: int
    status: str  # verified | failed
    task_id: str
    community_id: str
    call_type: str
    crew_ids: tuple[str, ...]
    at: datetime  # when it was verified (or failed)
    method: str = ""
    verified_at: datetime | None = None  # the verification the status refers to (failed: the one rejected, if any)


def next_verdict(current: Verdict | None, incoming: Verdict) -> Verdict | None:
    """The verdict after an incoming one, or None when it changes nothing (older, repeated, or a pass that
    a failure of the same attempt already overruled)."""
    if current is None or incoming.attempt > current.attempt:
        return incoming
    if incoming.attempt == current.attempt and current.status == VERIFIED and incoming.status == FAILED:
        # A resident's rejection of this verification (or a late failure of the same attempt): keep what it rejects.
        return replace(incoming, verified_at=current.verified_at or current.at)
    return None


# ---------------------------------------------------------------- the reporter's decision


def text(value: str, field: str, name_zh: str, limit: int, *, required: bool = False) -> str:
    """A free text, trimmed: control characters refused, at most `limit` characters."""
    out = unicodedata.normalize("NFC", value or "").strip()
    if required and not out:
        raise InvalidArgument(f"请填写{name_zh} ({field} is required)", field=field)
    if len(out) > limit:
        raise InvalidArgument(f"{name_zh}最多{limit}字 ({field}: at most {limit} characters)", field=field)
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in out):
        raise InvalidArgument(f"{name_zh}含有控制字符 ({field} contains control characters)", field=field)
    return out


def check_score(score: int, field: str = "score") -> int:
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise InvalidArgument(f"评分应为1至5分 ({field} must be 1..5)", field=field)
    return score


def redact(reason: str) -> str:
    """A reason as it goes into an event: runs of digits that could be a phone or an id number masked."""
    return _PHONE_LIKE.sub("***", reason)


@dataclass(frozen=True)
class Standing:
    """What the reporter may do now on an issue (follow view), and why not."""

    can_rate: bool
    rate_until: datetime | None
    can_reject: bool
    reject_until: datetime | None
    why_not: str  # bilingual, "" when both are possible


NOT_VERIFIED = "该事项尚未验收，验收后方可评价或退回 (the work is not verified yet: rate or reject it once it is)"
RATED = "您已评价过该事项 (you have rated this issue already)"
REJECTED = "您已退回本次验收结果，待重新办理后再评价 (you rejected this result: the task is reopened)"


def standing(
    verdict: Verdict | None, now: datetime, windows: Windows, *, rated: bool, decided_current: bool
) -> Standing:
    """The reporter's options: rating once per issue; rejecting once per verification; neither before the
    verification or after its window; rating and rejecting one verification exclude each other."""
    if rated:
        return Standing(False, None, False, None, RATED)
    if verdict is None or verdict.status != VERIFIED:
        if verdict is not None and verdict.method == RESIDENT_METHOD:
            return Standing(False, None, False, None, REJECTED)
        return Standing(False, None, False, None, NOT_VERIFIED)
    if decided_current:
        return Standing(False, None, False, None, REJECTED)
    verified = verdict.verified_at or verdict.at
    rate_until = verified + timedelta(days=windows.rating_days)
    reject_until = verified + timedelta(days=windows.rejection_days)
    can_rate, can_reject = now <= rate_until, now <= reject_until
    why = ""
    if not can_rate and not can_reject:
        why = (
            f"评价期限已过（验收后{windows.rating_days}天内） "
            f"(the rating window of {windows.rating_days} days has closed)"
        )
    elif not can_reject:
        why = (
            f"退回期限已过（验收后{windows.rejection_days}天内），仍可评价 "
            f"(the rejection window of {windows.rejection_days} days has closed; you may still rate)"
        )
    return Standing(can_rate, rate_until, can_reject, reject_until, why)


def require_may_rate(s: Standing, verdict: Verdict | None) -> Verdict:
    if s.why_not == RATED:
        raise AlreadyExists(RATED, reason="already_rated")
    if s.why_not == REJECTED:
        raise AlreadyExists(REJECTED, reason="already_decided")
    if verdict is None or verdict.status != VERIFIED:
        raise FailedPrecondition(NOT_VERIFIED, reason="not_verified")
    if not s.can_rate:
        raise FailedPrecondition(s.why_not, reason="window_closed")
    return verdict


ALREADY_REJECTED = "您已退回过本次验收结果 (you rejected this verified result already)"
RATED_NO_REJECT = "您已评价过该事项，不能再退回 (you rated this issue: its result can no longer be rejected)"


def require_may_reject(s: Standing, verdict: Verdict | None) -> Verdict:
    if s.why_not == RATED:
        raise AlreadyExists(RATED_NO_REJECT, reason="already_rated")
    if s.why_not == REJECTED:
        raise AlreadyExists(ALREADY_REJECTED, reason="already_rejected")
    if verdict is None or verdict.status != VERIFIED:
        raise FailedPrecondition(NOT_VERIFIED, reason="not_verified")
    if not s.can_reject:
        raise FailedPrecondition(s.why_not or "退回期限已过 (the rejection window has closed)", reason="window_closed")
    return verdict


def decided_message(kind: str) -> AlreadyExists:
    """The answer to a second decision on one verification, by what the first was."""
    if kind == RATING:
        return AlreadyExists(RATED, reason="already_rated")
    return AlreadyExists(ALREADY_REJECTED, reason="already_rejected")


def rating_id(verification_id: str) -> str:
    return f"rating:{verification_id}"


def rejection_id(verification_id: str) -> str:
    """The id of the resident's verdict (TaskVerificationFailed.verification_id)."""
    return f"resident:{verification_id}"


# ---------------------------------------------------------------- quarters and unit ratings


def quarter_of(at: datetime) -> str:
    local = at.astimezone(SHANGHAI)
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"


def previous_quarter(quarter: str) -> str:
    year, q = _parse_quarter(quarter)
    return f"{year - 1}Q4" if q == 1 else f"{year}Q{q - 1}"


def _parse_quarter(quarter: str) -> tuple[int, int]:
    found = _QUARTER_RE.match(quarter)
    if not found:
        raise InvalidArgument(
            f"季度格式应为如 2026Q4 (quarter {quarter[:20]!r} must look like 2026Q4)", field="quarter"
        )
    return int(found.group(1)), int(found.group(2))


def check_quarter(asked: str, now: datetime) -> str:
    """The quarter a unit rating is for: "" = the current one; else the current one or the one just ended."""
    current = quarter_of(now)
    asked = asked.strip().upper()
    if not asked:
        return current
    _parse_quarter(asked)
    if asked not in (current, previous_quarter(current)):
        raise InvalidArgument(
            f"只能评价本季度或上一季度 (quarter must be {current} or {previous_quarter(current)}, not {asked})",
            field="quarter",
        )
    return asked


def check_quarter_filter(asked: str) -> str:
    asked = asked.strip().upper()
    if asked:
        _parse_quarter(asked)
    return asked


@dataclass(frozen=True)
class Rater:
    kind: str  # resident_representative | alliance_member
    key: str  # "person:<id>" | "member_unit:<id>"
    community_id: str


def rater_of_member(responder: tuple[str, str] | None) -> str:
    """The key of a member principal's rater: its bound unit or person (a team does not rate)."""
    if responder is None or responder[0] not in ("member_unit", "person"):
        raise PermissionDenied(
            "仅以成员单位或个人身份评价 (an alliance member rates as its unit or as a person, not as a team)",
            reason="role",
        )
    return f"{responder[0]}:{responder[1]}"


def check_rater(rater: Rater, unit_id: str, unit_community: str) -> None:
    if rater.community_id != unit_community:
        raise PermissionDenied(
            f"只能评价本社区的成员单位 (unit_id: {unit_id!r} is not a member unit of the rater's community)",
            field="unit_id",
            reason="community_out_of_scope",
        )
    if rater.key == f"member_unit:{unit_id}":
        raise InvalidArgument("成员单位不能评价自己 (a member unit cannot rate itself)", field="unit_id")


def unit_rating_id(quarter: str, unit_id: str, rater_key: str) -> str:
    """One per rater, unit and quarter: the insert of this _id is what refuses a second rating."""
    return f"{quarter}:{unit_id}:{rater_key}"


ALREADY_RATED_UNIT = "本季度已评价过该成员单位 (this rater has rated this unit for this quarter already)"
