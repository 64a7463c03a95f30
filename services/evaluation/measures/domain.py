"""Measures and the quarterly boards (四榜): one definition each, pure (no database, no Kafka, no gRPC).

Everything here is a function of fact rows, counts and settings; the consumer (consumer.py) feeds it events,
the read side (readmodel.py) stores what it returns. Summarised in the README section "Measures and the
quarterly boards".

Periods
    Months "2026-12" and quarters "2026Q4", both in Asia/Shanghai, of each fact's one anchor time (below).

Subjects
    "member_unit:<id>", "person:<id>", "team:<id>" (the helpers, as dispatch names them in crew_ids and
    targets), "community:<id>" (every fact of the community) and "tenant" (every fact of the tenant).
    A helper's counts are kept per community (the community of the fact) and for the whole tenant (scope
    "*"); a community's only in its own scope, the tenant's only in "*".

Fact rows (one per natural key; merged from their events commutatively, so any order gives the same row)
    target  (whistle, target)  WhistleBlown targets; UnitReportedIn answers. Anchor: blown_at (else reported_at).
    task    task_id            TaskVerified / TaskVerificationFailed (any method, resident included),
                               DeadlineMissed (completion). Anchor: its first verdict's time.
    rating  rating id          IssueRated (on the task's crew_ids), UnitRated (on the unit, quarter only).
    duty    the fact's key     alliance life: AttendanceRecorded (meetings), ShiftServed/ShiftMissed (posts),
                               ResourcePledged/ResourceDelivered/ResourcePledgeWithdrawn (resources; key: the
                               pledge), ActivitySignedUp/ActivityAttended/ActivitySignupWithdrawn (co-building;
                               key: the participant's n-th sign-up to the activity, so a new sign-up after a
                               withdrawal is expected again). Anchor: the fact's time (the first seen).
                               `excused` (an absence with leave, a withdrawal) means "not expected unless met".

Measures (numerator ÷ denominator, each over the subject's facts anchored in the period)
    响应率 response        targets that answered (any answer) before the report-in deadline (UnitReportedIn
                           with late=false) ÷ targets called (WhistleBlown targets, plus answers from helpers
                           the call did not name).
    解决率 resolution      tasks whose first verification passed (TaskVerified with attempt 1) ÷ tasks with
                           a first verdict (closed).
    满意率 satisfaction    ratings of 4 or 5 ÷ ratings (a resident's IssueRated counts for every helper on
                           the task's crew; UnitRated counts for its unit).
    按时完成率 on_time     tasks closed without a missed completion deadline (DeadlineMissed completion) ÷
                           tasks closed.
    返工率 reopen          tasks closed that failed a verification at least once (TaskVerificationFailed, any
                           method, the resident's rejection included) ÷ tasks closed. Lower is better: the
                           composite uses 1 − reopen.
    吹号率 whistle         calls per month: targets called ÷ months in the period (a community's: the
                           targets of its whistles); a load figure, not part of the composite.
    五项职责 duties        met ÷ expected over the five common duties: meetings attended on time (excused
                           absences are not expected), whistles answered in time (= response), resources
                           delivered ÷ pledged, shifts served ÷ claimed shifts that ended, co-building
                           activities attended ÷ signed up (with a place). Each duty's own rate is shown too.
                           Withdrawal: a pledge withdrawn before delivery and a place given back before the
                           activity starts are not expected (like an absence with leave); a claim released
                           before its shift never reaches its end, so it is neither served nor missed. Only
                           what is not yet met can be withdrawn (the alliance refuses the rest); should a
                           withdrawal and its fulfilment both arrive, met wins (counted met and expected).

Composite and the boards' formula (FORMULA, published with every board)
    For each component i (response, resolution, satisfaction, on_time, no_reopen, duties) a subject has
    x_i = num_i / den_i over n_i = den_i facts. The board's mean m_i = Σ num_i / Σ den_i over all its
    entrants (the tenant's or the community's population). The shrunk rate is the Bayesian average
        s_i = (n_i · x_i + k · m_i) / (n_i + k) = (num_i + k · m_i) / (den_i + k)
    so one perfect task (n = 1) sits near the mean and a hundred good ones move far from it. The score is
        score = 100 · Σ w_i · s_i / Σ w_i   (components with weight 0 left out)
    with the tenant's weights (DEFAULT_WEIGHTS) and k (DEFAULT_PRIOR, 5). Workload = Σ den_i. An entrant needs
    at least `min_workload` facts (default 1). Ties: score (rounded to 4 decimals) high first, then the
    larger workload, then the subject id (ascending): deterministic.
    A measure's composite (measures API) is the same with each s_i = x_i (no shrinkage: one subject alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
ALL = "*"  # the scope of the whole tenant
TENANT_SUBJECT = "tenant"
FORMULA = "2026-1"

UNIT, PERSON, TEAM = "member_unit", "person", "team"
HELPER_KINDS = (UNIT, PERSON, TEAM)

# ---------------------------------------------------------------- periods


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def month_of(at: datetime) -> str:
    local = aware(at).astimezone(SHANGHAI)
    return f"{local.year:04d}-{local.month:02d}"


def quarter_of(at: datetime) -> str:
    local = aware(at).astimezone(SHANGHAI)
    return f"{local.year:04d}Q{(local.month - 1) // 3 + 1}"


def quarter_months(quarter: str) -> list[str]:
    year, q = parse_quarter(quarter)
    return [f"{year:04d}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]


def parse_quarter(quarter: str) -> tuple[int, int]:
    """(year, quarter) of "2026Q4"; ValueError otherwise."""
    text = quarter.strip().upper()
    if len(text) != 6 or text[4] != "Q" or not text[:4].isdigit() or text[5] not in "1234":
        raise ValueError(f"not a quarter: {quarter!r}")
    return int(text[:4]), int(text[5])


def is_period(period: str) -> bool:
    try:
        parse_quarter(period)
        return True
    except ValueError:
        pass
    parts = period.split("-")
    return (
        len(parts) == 2
        and parts[0].isdigit()
        and len(parts[0]) == 4
        and parts[1].isdigit()
        and 1 <= int(parts[1]) <= 12
    )


def months_in(period: str) -> int:
    return 3 if "Q" in period else 1


def quarter_end(quarter: str) -> datetime:
    """The first instant after the quarter (Asia/Shanghai), in UTC."""
    year, q = parse_quarter(quarter)
    year2, month2 = (year + 1, 1) if q == 4 else (year, 3 * q + 1)
    return datetime(year2, month2, 1, tzinfo=SHANGHAI).astimezone(UTC)


def quarter_of_period(period: str) -> str:
    if "Q" in period:
        return period
    year, month = period.split("-")
    return f"{year}Q{(int(month) - 1) // 3 + 1}"


def previous_quarter(quarter: str) -> str:
    year, q = parse_quarter(quarter)
    return f"{year - 1}Q4" if q == 1 else f"{year}Q{q - 1}"


# ---------------------------------------------------------------- measures


@dataclass(frozen=True)
class Measure:
    key: str
    name_zh: str
    name_en: str
    numerator: str  # a counter
    denominator: str  # a counter ("" = months in the period)
    definition: str
    lower_is_better: bool = False


DUTIES = ("meetings", "whistles", "resources", "posts", "cobuilding")
DUTY_NAMES = {
    "meetings": ("按时参会", "meetings attended"),
    "whistles": ("响应吹号", "whistles answered"),
    "resources": ("提供资源", "resources delivered"),
    "posts": ("认领岗位", "posts served"),
    "cobuilding": ("参与共建", "co-building joined"),
}

MEASURES: dict[str, Measure] = {
    m.key: m
    for m in (
        Measure(
            "response",
            "响应率",
            "response rate",
            "responded",
            "called",
            "targets that answered before the report-in deadline ÷ targets called",
        ),
        Measure(
            "resolution",
            "解决率",
            "resolution rate",
            "resolved",
            "closed",
            "tasks verified on their first verification ÷ tasks closed",
        ),
        Measure("satisfaction", "满意率", "satisfaction rate", "satisfied", "ratings", "ratings of 4 or 5 ÷ ratings"),
        Measure(
            "on_time",
            "按时完成率",
            "on-time completion",
            "on_time",
            "closed",
            "tasks closed without a missed completion deadline ÷ tasks closed",
        ),
        Measure(
            "reopen",
            "返工率",
            "reopen rate",
            "reopened",
            "closed",
            "tasks closed that failed a verification (resident's rejection included) ÷ tasks closed",
            lower_is_better=True,
        ),
        Measure(
            "whistle",
            "吹号率",
            "whistle rate",
            "called",
            "",
            "targets called per month (a community's: targets of its whistles)",
        ),
        Measure(
            "duties",
            "五项职责履职率",
            "five-duty compliance",
            "duty_met",
            "duty_expected",
            "duties met ÷ duties expected, over the five common duties",
        ),
        *(
            Measure(
                f"duty_{d}",
                DUTY_NAMES[d][0],
                DUTY_NAMES[d][1],
                "responded" if d == "whistles" else f"duty_{d}_met",
                "called" if d == "whistles" else f"duty_{d}_expected",
                f"{DUTY_NAMES[d][1]}: met ÷ expected",
            )
            for d in DUTIES
        ),
    )
}
RATES_ON_DASHBOARD = ("response", "resolution", "satisfaction")

# Components of the composite and the boards, and their default weights (a tenant sets its own).
COMPONENTS = ("response", "resolution", "satisfaction", "on_time", "reopen", "duties")
DEFAULT_WEIGHTS: dict[str, float] = {
    "response": 0.20,
    "resolution": 0.25,
    "satisfaction": 0.25,
    "on_time": 0.10,
    "reopen": 0.10,  # as 1 − reopen rate
    "duties": 0.10,
}
DEFAULT_PRIOR = 5.0  # k of the Bayesian average
DEFAULT_MIN_WORKLOAD = 1
DEFAULT_GRACE_HOURS = 72  # a closed quarter's boards freeze this long after it ends
MAX_PRIOR = 1000.0


@dataclass(frozen=True)
class Settings:
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    prior: float = DEFAULT_PRIOR
    min_workload: int = DEFAULT_MIN_WORKLOAD
    grace_hours: int = DEFAULT_GRACE_HOURS


class Invalid(ValueError):
    """A setting that does not fit, naming its field (the handlers turn it into INVALID_ARGUMENT)."""

    def __init__(self, message: str, field_name: str) -> None:
        super().__init__(message)
        self.field = field_name


def check_settings(weights: Mapping[str, float], prior: float, min_workload: int, grace_hours: int) -> Settings:
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise Invalid(f"unknown weight {unknown[0]!r} (未知权重), known: {', '.join(COMPONENTS)}", "weights")
    merged = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in weights.items()}}
    for k, v in merged.items():
        if not math.isfinite(v) or v < 0 or v > 100:
            raise Invalid(f"weight {k} must be between 0 and 100 (权重应在0到100之间), not {v}", "weights")
    if sum(merged.values()) <= 0:
        raise Invalid("at least one weight must be above 0 (至少一项权重大于0)", "weights")
    if not math.isfinite(prior) or prior < 0 or prior > MAX_PRIOR:
        raise Invalid(f"prior must be between 0 and {MAX_PRIOR:g} (先验强度k应在0到{MAX_PRIOR:g}之间)", "prior")
    if min_workload < 1 or min_workload > 10000:
        raise Invalid("min_workload must be between 1 and 10000 (最低工作量应在1到10000之间)", "min_workload")
    if grace_hours < 0 or grace_hours > 24 * 90:
        raise Invalid("grace_hours must be between 0 and 2160 (宽限期应在0到2160小时之间)", "grace_hours")
    return Settings(merged, float(prior), int(min_workload), int(grace_hours))


@dataclass(frozen=True)
class Value:
    measure: str
    numerator: float
    denominator: float
    rate: float | None  # None: no facts


def value_of(measure: Measure, counts: Mapping[str, int], period: str) -> Value:
    num = float(counts.get(measure.numerator, 0))
    den = float(counts.get(measure.denominator, 0)) if measure.denominator else float(months_in(period))
    rate = num / den if den > 0 else None
    return Value(measure.key, num, den, rate)


def duty_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Counters derived from the kept ones: the five duties pooled (met and expected; whistles answered are
    the response counters), and tasks closed on time (closed − closed after a missed deadline: the rare
    case is what is kept)."""
    met = counts.get("responded", 0) + sum(counts.get(f"duty_{d}_met", 0) for d in DUTIES if d != "whistles")
    exp = counts.get("called", 0) + sum(counts.get(f"duty_{d}_expected", 0) for d in DUTIES if d != "whistles")
    on_time = counts.get("closed", 0) - counts.get("closed_late", 0)
    return {"duty_met": met, "duty_expected": exp, "on_time": on_time}


def measures_of(counts: Mapping[str, int], period: str) -> list[Value]:
    full = {**counts, **duty_counts(counts)}
    return [value_of(m, full, period) for m in MEASURES.values()]


def component(key: str, counts: Mapping[str, int]) -> tuple[float, float]:
    """(num, den) of a composite component; reopen is turned into 'closed without a reopening'."""
    full = {**counts, **duty_counts(counts)}
    m = MEASURES[key]
    num, den = float(full.get(m.numerator, 0)), float(full.get(m.denominator, 0))
    if m.lower_is_better:
        num = den - num
    return num, den


def composite(counts: Mapping[str, int], weights: Mapping[str, float]) -> float | None:
    """Σ w·x / Σ w over the components the subject has facts for (no shrinkage), 0..100; None: none."""
    total_w, total = 0.0, 0.0
    for key in COMPONENTS:
        w = float(weights.get(key, 0))
        num, den = component(key, counts)
        if w <= 0 or den <= 0:
            continue
        total_w += w
        total += w * num / den
    return round(100 * total / total_w, 4) if total_w else None


# ---------------------------------------------------------------- boards

BOARDS: dict[str, tuple[str, str]] = {
    "red_property": ("红色物业光荣榜", "red property honour board"),
    "social_org": ("社会组织人气榜", "social organisation popularity board"),
    "party_member": ("党员先锋榜", "party-member vanguard board"),
    "volunteer": ("志愿者明星榜", "volunteer star board"),
}
SOCIAL_ORG_KINDS = frozenset({"new_economy_social_org", "public_interest_org", "grassroots_association"})


def boards_for(subject_kind: str, unit_kind: str, roles: Iterable[str]) -> list[str]:
    """Which boards a subject enters: property companies, social organisations, party members, volunteers."""
    out = []
    if subject_kind == UNIT:
        if unit_kind == "property_company":
            out.append("red_property")
        if unit_kind in SOCIAL_ORG_KINDS:
            out.append("social_org")
    elif subject_kind == PERSON:
        found = set(roles)
        if "party_member" in found:
            out.append("party_member")
        if "volunteer" in found:
            out.append("volunteer")
    return out


@dataclass(frozen=True)
class Candidate:
    subject: str  # "<kind>:<id>"
    name_zh: str
    counts: Mapping[str, int]


@dataclass(frozen=True)
class Part:
    """One component of an entrant's score: its facts, the board's mean, the shrunk rate and the weight."""

    component: str
    numerator: float
    denominator: float
    mean: float
    shrunk: float
    weight: float
    points: float  # its share of the score (0..100 in all)


@dataclass(frozen=True)
class Entry:
    rank: int
    subject: str
    name_zh: str
    score: float
    workload: int
    parts: tuple[Part, ...]
    text: str = ""  # the explanation as frozen (a frozen board's row keeps it)

    def explanation(self) -> str:
        """The score in words (Chinese, then English): which facts, which weights."""
        if self.text:
            return self.text
        bits = []
        for p in self.parts:
            m = MEASURES[p.component]
            what = "未返工" if m.lower_is_better else m.name_zh
            bits.append(
                f"{what} {p.numerator:g}/{p.denominator:g} → 收缩后 {p.shrunk:.3f} (均值 {p.mean:.3f})"
                f" × 权重 {p.weight:g}"
                f" = {p.points:.2f}"
            )
        return (
            f"得分 {self.score:.2f} = "
            + "；".join(bits)
            + f"。工作量 {self.workload} 项 (workload: facts behind the score)"
        )


def means(candidates: Sequence[Candidate]) -> dict[str, float]:
    """The board's pooled rate per component (Σ num / Σ den over its candidates); 0 where nobody has facts."""
    out = {}
    for key in COMPONENTS:
        nums = dens = 0.0
        for c in candidates:
            n, d = component(key, c.counts)
            nums, dens = nums + n, dens + d
        out[key] = nums / dens if dens > 0 else 0.0
    return out


def workload(counts: Mapping[str, int]) -> int:
    """The facts behind a score: targets called, tasks closed, ratings, duties expected (other than whistles)."""
    return int(
        counts.get("called", 0)
        + counts.get("closed", 0)
        + counts.get("ratings", 0)
        + sum(counts.get(f"duty_{d}_expected", 0) for d in DUTIES if d != "whistles")
    )


def score(candidate: Candidate, mean: Mapping[str, float], settings: Settings) -> tuple[float, tuple[Part, ...]]:
    weights = {k: float(settings.weights.get(k, 0)) for k in COMPONENTS}
    total_w = sum(w for w in weights.values() if w > 0)
    parts = []
    for key in COMPONENTS:
        w = weights[key]
        if w <= 0:
            continue
        num, den = component(key, candidate.counts)
        k = settings.prior
        shrunk = (num + k * mean[key]) / (den + k) if den + k > 0 else mean[key]
        parts.append(
            Part(key, num, den, round(mean[key], 6), round(shrunk, 6), w, round(100 * w * shrunk / total_w, 4))
        )
    total = round(sum(p.points for p in parts), 4) if total_w else 0.0
    return total, tuple(parts)


def rank(candidates: Sequence[Candidate], settings: Settings) -> list[Entry]:
    """The board: candidates with enough workload, by the published formula; deterministic tie breaks."""
    eligible = [c for c in candidates if workload(c.counts) >= settings.min_workload]
    mean = means(eligible)
    scored = []
    for c in eligible:
        s, parts = score(c, mean, settings)
        scored.append((c, s, parts, workload(c.counts)))
    scored.sort(key=lambda x: (-round(x[1], 4), -x[3], x[0].subject))
    return [Entry(i + 1, c.subject, c.name_zh, round(s, 4), w, parts) for i, (c, s, parts, w) in enumerate(scored)]


def changes(old: Mapping[str, Sequence[Entry]], new: Mapping[str, Sequence[Entry]]) -> str:
    """A readable difference between two versions of a board set (Chinese with English), "" when the same."""
    lines = []
    for board in BOARDS:
        before = {e.subject: e for e in old.get(board, ())}
        after = {e.subject: e for e in new.get(board, ())}
        for subject in sorted(set(before) | set(after)):
            b, a = before.get(subject), after.get(subject)
            name = (a or b).name_zh if (a or b) else subject  # type: ignore[union-attr]
            if b is None and a is not None:
                lines.append(f"{BOARDS[board][0]}: {name} 新上榜 (entered) 第{a.rank}名 {a.score:.2f}")
            elif a is None and b is not None:
                lines.append(f"{BOARDS[board][0]}: {name} 下榜 (left) 原第{b.rank}名")
            elif a is not None and b is not None and (a.rank != b.rank or abs(a.score - b.score) >= 0.005):
                lines.append(
                    f"{BOARDS[board][0]}: {name} 第{b.rank}名→第{a.rank}名, {b.score:.2f}→{a.score:.2f} (rank, score)"
                )
    return "\n".join(lines)


def same_boards(old: Mapping[str, Sequence[Entry]], new: Mapping[str, Sequence[Entry]]) -> bool:
    def key(boards: Mapping[str, Sequence[Entry]]) -> list[Any]:
        return [(b, [(e.rank, e.subject, round(e.score, 2), e.workload) for e in boards.get(b, ())]) for b in BOARDS]

    return key(old) == key(new)


# ---------------------------------------------------------------- fact rows and their contributions
#
# A fact row is a dict of its table's columns. `merge_*` folds a partial row (what one event says) into the
# stored one; every field is merged commutatively (min, max, or, union, sum of distinct events), so a row is
# the same whatever order its events arrive in. `contributions` lists what a row adds to the counters:
# (scope, period, subject, counter, n).

Contribution = tuple[str, str, str, str, int]


def _min_time(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(aware(a), aware(b))


def _max_text(a: str, b: str) -> str:
    return max(a or "", b or "")


def merge(kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Fold `new` (one event's partial row) into `old` (the stored row, None: none yet)."""
    if old is None:
        base = dict(EMPTY[kind])
        base.update({k: v for k, v in new.items() if k in KEYS[kind]})
        old = base
    out = dict(old)
    for col, how in MERGE[kind].items():
        if col not in new:
            continue
        a, b = old.get(col), new[col]
        if how == "min_time":
            out[col] = _min_time(a, b)
        elif how == "text":
            out[col] = _max_text(a or "", b or "")
        elif how == "or":
            out[col] = bool(a) or bool(b)
        elif how == "sum":
            out[col] = int(a or 0) + int(b or 0)
        elif how == "union":
            out[col] = sorted(set(a or ()) | set(b or ()))
        elif how == "max_int":
            out[col] = max(int(a or 0), int(b or 0))
    return settle(kind, out)


KEYS = {
    "target": ("whistle_id", "target"),
    "task": ("task_id",),
    "rating": ("rating_id",),
    "duty": ("fact_id",),
}
EMPTY: dict[str, dict[str, Any]] = {
    "target": {
        "community_id": "",
        "called": False,
        "reported": False,
        "in_time": False,
        "blown_at": None,
        "reported_at": None,
        "anchor_at": None,
        "quarter": "",
    },
    "task": {
        "community_id": "",
        "call_type": "",
        "crew": [],
        "verdicts": 0,
        "failures": 0,
        "resident_failures": 0,
        "first_pass": False,
        "first_fail": False,
        "missed": False,
        "anchor_at": None,
        "quarter": "",
    },
    "rating": {
        "community_id": "",
        "kind": "",
        "subjects": [],
        "score": 0,
        "anchor_at": None,
        "rated_quarter": "",
        "quarter": "",
    },
    "duty": {
        "community_id": "",
        "duty": "",
        "subjects": [],
        "expected": False,
        "met": False,
        "excused": False,
        "anchor_at": None,
        "quarter": "",
    },
}
MERGE: dict[str, dict[str, str]] = {
    "target": {
        "community_id": "text",
        "called": "or",
        "reported": "or",
        "in_time": "or",
        "blown_at": "min_time",
        "reported_at": "min_time",
    },
    "task": {
        "community_id": "text",
        "call_type": "text",
        "crew": "union",
        "verdicts": "sum",
        "failures": "sum",
        "resident_failures": "sum",
        "first_pass": "or",
        "first_fail": "or",
        "missed": "or",
        "anchor_at": "min_time",
    },
    "rating": {
        "community_id": "text",
        "kind": "text",
        "subjects": "union",
        "score": "max_int",
        "anchor_at": "min_time",
        "rated_quarter": "text",
    },
    "duty": {
        "community_id": "text",
        "duty": "text",
        "subjects": "union",
        "expected": "or",
        "met": "or",
        "excused": "or",
        "anchor_at": "min_time",
    },
}


def _target_anchor(row: dict[str, Any]) -> datetime | None:
    return row.get("blown_at") or row.get("reported_at")


def settle(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """Derived columns after a merge (anchor, quarter)."""
    if kind == "target":
        row["anchor_at"] = _target_anchor(row)
    if row.get("anchor_at"):
        row["quarter"] = quarter_of(row["anchor_at"])
    if kind == "rating" and row.get("rated_quarter"):
        row["quarter"] = row["rated_quarter"]
    return row


def _helpers(subjects: Iterable[str]) -> list[str]:
    return sorted({s for s in subjects if s.split(":", 1)[0] in HELPER_KINDS and ":" in s and s.split(":", 1)[1]})


def _spread(
    out: list[Contribution], community: str, periods: Sequence[str], helpers: Sequence[str], counter: str, n: int = 1
) -> None:
    """One count for each helper (in its community and the tenant), the community and the tenant."""
    if n == 0:
        return
    for period in periods:
        for h in helpers:
            if community:
                out.append((community, period, h, counter, n))
            out.append((ALL, period, h, counter, n))
        if community:
            out.append((community, period, f"community:{community}", counter, n))
        out.append((ALL, period, TENANT_SUBJECT, counter, n))


def contributions(kind: str, row: Mapping[str, Any]) -> list[Contribution]:
    """What one fact row adds to the counters (a pure function of the row)."""
    out: list[Contribution] = []
    at = row.get("anchor_at")
    if at is None:
        return out  # nothing that anchors it in time yet (e.g. only a missed deadline of an undecided task)
    community = row.get("community_id") or ""
    periods = [month_of(at), quarter_of(at)]
    if kind == "target":
        helpers = _helpers([row["target"]])
        _spread(out, community, periods, helpers, "called")
        if row.get("in_time"):
            _spread(out, community, periods, helpers, "responded")
    elif kind == "task":
        if int(row.get("verdicts") or 0) <= 0:
            return out
        helpers = _helpers(row.get("crew") or ())
        _spread(out, community, periods, helpers, "closed")
        if row.get("first_pass") and not row.get("first_fail"):
            _spread(out, community, periods, helpers, "resolved")
        if row.get("missed"):
            _spread(out, community, periods, helpers, "closed_late")
        if int(row.get("failures") or 0) > 0:
            _spread(out, community, periods, helpers, "reopened")
    elif kind == "rating":
        score_ = int(row.get("score") or 0)
        if not 1 <= score_ <= 5:
            return out
        helpers = _helpers(row.get("subjects") or ())
        if row.get("kind") == "unit":
            periods = [row.get("rated_quarter") or quarter_of(at)]  # quarterly ratings count in the quarter only
        _spread(out, community, periods, helpers, "ratings")
        if score_ >= 4:
            _spread(out, community, periods, helpers, "satisfied")
    elif kind == "duty":
        duty = row.get("duty") or ""
        if duty not in DUTIES or (row.get("excused") and not row.get("met")):
            return out
        helpers = _helpers(row.get("subjects") or ())
        if row.get("expected") or row.get("met"):
            _spread(out, community, periods, helpers, f"duty_{duty}_expected")
        if row.get("met"):
            _spread(out, community, periods, helpers, f"duty_{duty}_met")
    return out


def periods_of_quarter(quarter: str) -> list[str]:
    return [quarter, *quarter_months(quarter)]
