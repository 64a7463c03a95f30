"""The ledger's rules, pure Python: pledges (提供资源), the volunteer time bank (志愿服务时长) and the community
funds (社区经费) as balanced postings in integer fen. No database, gRPC or Kafka here (tests/unit)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from services.common.errors import FailedPrecondition, InvalidArgument

LOCAL = ZoneInfo("Asia/Shanghai")

# ---------------------------------------------------------------- what a pledge or a spending is for

TASK, ACTIVITY, DECISION = "task", "activity", "decision"
FOR_KINDS = (TASK, ACTIVITY, DECISION)
FOR_KIND_ZH = {TASK: "任务", ACTIVITY: "共建活动", DECISION: "会议决议"}
ID_MAX = 120
TEXT_MAX = 500


def _id(value: str, field: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidArgument(f"{field} is required: {what} ({field}必填)", field=field)
    if len(value) > ID_MAX or any(c.isspace() for c in value):
        raise InvalidArgument(
            f"{field} {value[:40]!r} is not an id: at most {ID_MAX} characters, no spaces ({field}格式无效)",
            field=field,
        )
    return value


def target(for_kind: str, for_id: str, item_id: str = "") -> tuple[str, str, str]:
    """(for_kind, for_id, item_id) of what a pledge or a spending is for: a task, an activity, or a meeting's
    decision (the meeting's id and the agenda item's)."""
    kind = (for_kind or "").strip()
    if kind not in FOR_KINDS:
        raise InvalidArgument(
            f"for_kind {for_kind!r} must be one of {', '.join(FOR_KINDS)} (用途类型须为任务、活动或会议决议)",
            field="for_kind",
        )
    ident = _id(for_id, "for_id", "the task's, activity's or meeting's id (所属任务/活动/会议编号)")
    item = (item_id or "").strip()
    if kind == DECISION:
        item = _id(item, "item_id", "the meeting's agenda item the decision is on (会议议题编号)")
    elif item:
        raise InvalidArgument("item_id goes only with for_kind decision (仅会议决议需填议题编号)", field="item_id")
    return kind, ident, item


def note(value: str, field: str = "note") -> str:
    value = (value or "").strip()
    if len(value) > TEXT_MAX:
        raise InvalidArgument(f"{field} is longer than {TEXT_MAX} characters ({field}过长)", field=field)
    return value


# ---------------------------------------------------------------- pledges (提供资源)

PLEDGED, DELIVERED, WITHDRAWN = "pledged", "delivered", "withdrawn"
PLEDGE_STATUSES = (PLEDGED, DELIVERED, WITHDRAWN)
QUANTITY_MAX = 1_000_000_000.0


def quantity(value: float, listed: float) -> float:
    """A pledged quantity: positive, finite, and no more than the unit's list offers (where it says how much)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0 or value > QUANTITY_MAX:
        raise InvalidArgument(f"quantity {value!r} must be a positive number (数量须为正数)", field="quantity")
    if listed > 0 and value > listed + 1e-9:
        raise InvalidArgument(
            f"quantity {value:g} is more than the {listed:g} the unit's resource list offers; pledge at most that "
            "or update the list first (承诺数量超过资源清单所列数量)",
            field="quantity",
        )
    return float(value)


def can_deliver(status: str) -> None:
    if status != PLEDGED:
        raise FailedPrecondition(
            f"the pledge is {status}, only a pledged one can be confirmed delivered "
            f"(该承诺已{STATUS_ZH[status]}，不能确认交付)",
            field="status",
        )


def can_withdraw(status: str) -> None:
    if status != PLEDGED:
        raise FailedPrecondition(
            f"the pledge is {status}, only one not yet delivered can be withdrawn "
            f"(该承诺已{STATUS_ZH[status]}，不能撤回)",
            field="status",
        )


STATUS_ZH = {PLEDGED: "承诺", DELIVERED: "交付", WITHDRAWN: "撤回"}


def age_seconds(pledged_at: datetime, now: datetime) -> int:
    """How long a pledge has waited, computed when read (never stored)."""
    return max(0, int((_aware(now) - _aware(pledged_at)).total_seconds()))


# ---------------------------------------------------------------- the volunteer time bank

ACTIVITY_SOURCE, SHIFT_SOURCE, TASK_SOURCE, CORRECTION = "activity", "shift", "task", "correction"
SOURCE_KINDS = (ACTIVITY_SOURCE, SHIFT_SOURCE, TASK_SOURCE, CORRECTION)
FACT_HOURS_MAX = 24.0  # one fact (an activity, a shift, a task) credits at most a day
CORRECTION_MAX = 1000.0
CALL_TYPES = ("service", "tackling", "emergency")
# Hours a person on the crew of a verified task is credited, per call type, until the tenant sets its own.
DEFAULT_TASK_HOURS: Mapping[str, float] = {"service": 2.0, "tackling": 4.0, "emergency": 3.0}


def hours_value(value: float) -> float:
    """Hours to two decimals (the time bank counts to the 0.01 h, 36 s)."""
    return round(float(value), 2)


def fact_hours(value: float) -> float | None:
    """The hours a verified fact credits, or None when it credits nothing (0 or less, or not a number)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    h = hours_value(min(float(value), FACT_HOURS_MAX))
    return h if h > 0 else None


def correction_hours(value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument("hours must be a number (时长须为数字)", field="hours")
    h = hours_value(value)
    if h == 0 or abs(h) > CORRECTION_MAX:
        raise InvalidArgument(
            f"hours {value!r} must be non-zero and at most {CORRECTION_MAX:g} either way; negative takes hours off "
            "(更正时长须非零，负数为扣减)",
            field="hours",
        )
    return h


def entry_id(source_kind: str, source_id: str, person_id: str) -> str:
    """A credit's _id, derived from its source and its person: the same source credits a person once."""
    digest = hashlib.sha256(f"{source_kind}\x1f{source_id}\x1f{person_id}".encode()).hexdigest()
    return f"h-{digest[:32]}"


def keyed_id(prefix: str, key: str, scope: str) -> str:
    """An id derived from a caller's idempotency key (within `scope`: the caller and what it names)."""
    digest = hashlib.sha256(f"{scope}\x1f{key}".encode()).hexdigest()
    return f"{prefix}-{digest[:32]}"


def task_hours(rules: Mapping[str, float], call_type: str) -> float:
    return float(rules.get(call_type, DEFAULT_TASK_HOURS.get(call_type, DEFAULT_TASK_HOURS["service"])))


def crew_people(crew_ids: Sequence[str]) -> list[str]:
    """The persons of a task's crew ("<kind>:<id>"; units and teams are not credited hours)."""
    out: list[str] = []
    for raw in crew_ids:
        kind, sep, ident = raw.partition(":")
        if sep and kind == "person" and ident.strip() and ident.strip() not in out:
            out.append(ident.strip())
    return out


def rules_hours(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    out = dict(DEFAULT_TASK_HOURS)
    for call_type, hours in pairs:
        if call_type not in CALL_TYPES:
            raise InvalidArgument(
                f"call_type {call_type!r} must be one of {', '.join(CALL_TYPES)} (集结号类型无效)", field="task_hours"
            )
        if not isinstance(hours, (int, float)) or not math.isfinite(hours) or not 0 <= hours <= FACT_HOURS_MAX:
            raise InvalidArgument(
                f"hours for {call_type} must be 0..{FACT_HOURS_MAX:g} (每项任务时长须在0到24小时之间)",
                field="task_hours",
            )
        out[call_type] = hours_value(hours)
    return out


# ---------------------------------------------------------------- community funds (社区经费)

FUNDS: Mapping[str, str] = {
    "running": "运转经费",
    "resident_service": "为民服务经费",
    "model_community": "示范社区党费支持",
    "property_backstop": "物业兜底资金",
}
ALLOCATION, SPENDING = "allocation", "spending"
AMOUNT_MAX_FEN = 100_000_000_000  # ¥1 billion in one entry
SOURCE_MAX = 100


def fund(value: str) -> str:
    value = (value or "").strip()
    if value not in FUNDS:
        raise InvalidArgument(
            f"fund {value!r} must be one of {', '.join(FUNDS)} "
            "(经费类型须为运转经费、为民服务经费、示范社区党费支持或物业兜底资金)",
            field="fund",
        )
    return value


def amount(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value > AMOUNT_MAX_FEN:
        raise InvalidArgument(
            f"amount_fen {value!r} must be a whole number of fen, 1..{AMOUNT_MAX_FEN} (金额以分为单位，须为正整数)",
            field="amount_fen",
        )
    return value


def source(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidArgument(
            "source is required: where the money comes from, e.g. 区财政, 街道拨款, 党费 (须注明资金来源)",
            field="source",
        )
    if len(value) > SOURCE_MAX or ":" in value:
        raise InvalidArgument(
            f"source must be at most {SOURCE_MAX} characters without ':' (资金来源格式无效)", field="source"
        )
    return value


@dataclass(frozen=True)
class Posting:
    account: str
    debit_fen: int = 0
    credit_fen: int = 0


def fund_account(community_id: str, fund_name: str) -> str:
    return f"fund:{community_id}:{fund_name}"


def fund_id(community_id: str, fund_name: str) -> str:
    return f"{community_id}:{fund_name}"


def postings(kind: str, community_id: str, fund_name: str, amount_fen: int, counterpart: str) -> list[Posting]:
    """The balanced postings of an entry: an allocation debits the fund and credits its source; a spending
    debits the expense it is for and credits the fund. A fund's balance is its debits less its credits."""
    account = fund_account(community_id, fund_name)
    if kind == ALLOCATION:
        out = [Posting(account, debit_fen=amount_fen), Posting(f"source:{counterpart}", credit_fen=amount_fen)]
    elif kind == SPENDING:
        out = [Posting(f"expense:{counterpart}", debit_fen=amount_fen), Posting(account, credit_fen=amount_fen)]
    else:
        raise ValueError(kind)
    assert balanced(out)
    return out


def balanced(entries: Sequence[Posting]) -> bool:
    return sum(p.debit_fen for p in entries) == sum(p.credit_fen for p in entries)


def fund_delta(entries: Sequence[Posting], account: str) -> int:
    """What the postings move the account by (debit positive)."""
    return sum(p.debit_fen - p.credit_fen for p in entries if p.account == account)


def spend(balance_fen: int, amount_fen: int) -> int:
    """The balance after spending, or FAILED_PRECONDITION (HTTP 409) when the fund holds less."""
    if amount_fen > balance_fen:
        raise FailedPrecondition(
            f"the fund holds {balance_fen / 100:.2f} yuan, less than the {amount_fen / 100:.2f} to spend; allocate "
            "first or spend less (余额不足，请先拨款或减少支出)",
            field="amount_fen",
            reason="insufficient_funds",
        )
    return balance_fen - amount_fen


# ---------------------------------------------------------------- time


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def local_month(at: datetime) -> date:
    """The first day of the local (Asia/Shanghai) month a time falls in."""
    local = _aware(at).astimezone(LOCAL)
    return date(local.year, local.month, 1)


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """A local year as a UTC half-open range."""
    if not 2000 <= year <= 2100:
        raise InvalidArgument(f"year {year} must be 2000..2100 (年份无效)", field="year")
    start = datetime(year, 1, 1, tzinfo=LOCAL).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=LOCAL).astimezone(UTC)
    return start, end


def parse_month(value: str, field: str) -> date:
    try:
        y, m = value.strip().split("-")
        return date(int(y), int(m), 1)
    except ValueError:
        raise InvalidArgument(f"{field} {value!r} must be YYYY-MM (月份格式须为YYYY-MM)", field=field) from None
