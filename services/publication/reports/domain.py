"""The report upward's pure parts (no infrastructure; unit-tested in tests/unit/test_publication_report.py):
months and quarters in Asia/Shanghai, the rates kept in a publication, the ranking of communities, and the
burden ledger (减负) folded from audit entries.

The ledger reads what the gateway's governance writes to the audit log (gateway/routes_governance.py,
gateway/department.py), by action:

- request.file (outcome done, target the request id "dr-…"): detail {kind: data_access | assistance_task,
  community_id, quota, …} — a request filed;
- request.refuse (outcome refused, no target): detail {reason: assessment_task_refused | tenant_out_of_scope,
  kind, community_id (when the body named one)} — refused outright, never filed;
- request.approve (outcome allowed, target the request id, grant_id "gr-…"): detail {quota, narrowed, …};
- request.reject (outcome refused, target the request id): detail {kind, community_id};
- department.call (outcome allowed, grant_id): one use of a grant's quota; detail {community_id, use, …}.

An approval's or a rejection's community is its request's (the request.file entry of the same target, which
may be of an earlier month); a use's is its detail's, else its grant's request's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from services.publication.content import LedgerLine, LedgerReason, Ranking, Rate

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
QUARTER_ZH = {1: "第一季度", 2: "第二季度", 3: "第三季度", 4: "第四季度"}

# The rates a publication shows, in this order (evaluation's duty_* details stay at evaluation).
RATE_KEYS = ("response", "resolution", "satisfaction", "on_time", "reopen", "whistle", "duties")

# Request and grant ids (gateway/governance/store.py): a grant's id is its request's with the other prefix.
REQUEST_PREFIX, GRANT_PREFIX = "dr-", "gr-"

FILE, REFUSE, APPROVE, REJECT, CALL = (
    "request.file",
    "request.refuse",
    "request.approve",
    "request.reject",
    "department.call",
)
LEDGER_ACTIONS = (FILE, REFUSE, APPROVE, REJECT, CALL)
DATA_ACCESS, ASSISTANCE = "data_access", "assistance_task"
ASSESSMENT = "assessment_task_refused"
REASONS_ZH = {
    ASSESSMENT: "考核任务，拒绝受理",
    "tenant_out_of_scope": "超出部门权限范围，拒绝受理",
    "rejected": "区级审核驳回",
    "narrowed": "审核收窄范围或配额",
}
OTHER_REASON_ZH = "其他原因拒绝受理"
UNSPECIFIED = ""  # the ledger line of refusals that named no community of the tenant
UNSPECIFIED_ZH = "未指明社区"


# ---------------------------------------------------------------- periods


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a month "YYYY-MM" in Asia/Shanghai, as aware datetimes (ValueError if malformed)."""
    m = MONTH.match(period)
    if not m:
        raise ValueError(period)
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=SHANGHAI)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def quarter_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a quarter "YYYYQn" in Asia/Shanghai (ValueError if malformed)."""
    m = QUARTER.match(period)
    if not m:
        raise ValueError(period)
    year, q = int(m.group(1)), int(m.group(2))
    start = datetime(year, 3 * q - 2, 1, tzinfo=SHANGHAI)
    end = datetime(year + (q == 4), (3 * q) % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def month_zh(period: str) -> str:
    start, _ = month_bounds(period)
    return f"{start.year}年{start.month}月"


def quarter_zh(period: str) -> str:
    start, _ = quarter_bounds(period)
    return f"{start.year}年{QUARTER_ZH[(start.month + 2) // 3]}"


def as_of(end: datetime) -> str:
    """The period's end, RFC 3339 with +08:00 (the content's `as_of`)."""
    return end.astimezone(SHANGHAI).isoformat()


def day(at: datetime | None) -> str:
    """A UTC instant's Asia/Shanghai date, "YYYY-MM-DD" ("" for none)."""
    if at is None:
        return ""
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(SHANGHAI).date().isoformat()


# ---------------------------------------------------------------- rates and rankings


def rate(
    key: str,
    name_zh: str,
    name_en: str,
    numerator: float,
    denominator: float,
    value: float | None,
    lower_is_better: bool,
) -> Rate:
    return {
        "key": key,
        "name_zh": name_zh,
        "name_en": name_en,
        "numerator": float(numerator),
        "denominator": float(denominator),
        "rate": None if value is None else round(float(value), 6),
        "lower_is_better": bool(lower_is_better),
    }


def only_published(rates: Iterable[Rate]) -> list[Rate]:
    """The rates a publication shows, in RATE_KEYS' order."""
    by_key = {r["key"]: r for r in rates}
    return [by_key[k] for k in RATE_KEYS if k in by_key]


@dataclass(frozen=True)
class CommunityMonth:
    community_id: str
    name_zh: str
    composite: float | None
    issues_handled: int  # tasks closed in the month (resolution's denominator)
    rates: tuple[Rate, ...] = field(default=())


def rank(months: Sequence[CommunityMonth]) -> list[Ranking]:
    """Communities best first: by composite (none last), then issues handled, then id; ranks 1..n (a
    community without a composite is ranked after those with one)."""

    def key(m: CommunityMonth) -> tuple[int, float, int, str]:
        return (m.composite is None, -(m.composite or 0.0), -m.issues_handled, m.community_id)

    out: list[Ranking] = []
    for i, m in enumerate(sorted(months, key=key), start=1):
        out.append(
            {
                "rank": i,
                "community_id": m.community_id,
                "community_name_zh": m.name_zh,
                "composite": None if m.composite is None else round(m.composite, 4),
                "issues_handled": m.issues_handled,
                "rates": list(m.rates),
            }
        )
    return out


# ---------------------------------------------------------------- the burden ledger (减负)


def request_of_grant(grant_id: str) -> str:
    return REQUEST_PREFIX + grant_id.removeprefix(GRANT_PREFIX) if grant_id.startswith(GRANT_PREFIX) else ""


def requests_to_look_up(entries: Iterable[Mapping[str, Any]]) -> set[str]:
    """The request ids whose filing (request.file) the month's entries need for their community."""
    out: set[str] = set()
    for e in entries:
        action = e["action"]
        if action in (APPROVE, REJECT) and e.get("target"):
            out.add(str(e["target"]))
        elif action == CALL and not (e.get("detail") or {}).get("community_id"):
            found = request_of_grant(str(e.get("grant_id") or ""))
            if found:
                out.add(found)
    return out


@dataclass
class _Tally:
    data_requests: int = 0
    assistance_tasks: int = 0
    approved: int = 0
    narrowed: int = 0
    rejected: int = 0
    refused: int = 0
    assessment_refused: int = 0
    quota_granted: int = 0
    quota_used: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def reason(self, code: str) -> None:
        self.reasons[code] = self.reasons.get(code, 0) + 1


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def ledger(
    entries: Iterable[Mapping[str, Any]],
    filed: Mapping[str, str],
    communities: Mapping[str, str],
) -> list[LedgerLine]:
    """The month's ledger, a line per community of the tenant (every one, zeros included: the burden is shown
    also where there is none), sorted by community id; refusals naming no community of the tenant on a line
    of their own (community_id "", 未指明社区) when there are any.

    `entries`: the month's audit entries of LEDGER_ACTIONS (dicts with action, outcome, target, grant_id,
    detail); `filed`: request id -> its community (from request.file entries, any month); `communities`:
    id -> name of the tenant's communities."""
    tallies: dict[str, _Tally] = {c: _Tally() for c in communities}

    def line(community: str) -> _Tally:
        key = community if community in communities else UNSPECIFIED
        return tallies.setdefault(key, _Tally())

    for e in sorted(entries, key=lambda x: _int(x.get("seq"))):
        action, outcome = e["action"], e.get("outcome", "")
        detail: Mapping[str, Any] = e.get("detail") or {}
        target = str(e.get("target") or "")
        if action == FILE and outcome == "done":
            t = line(str(detail.get("community_id") or ""))
            if detail.get("kind") == ASSISTANCE:
                t.assistance_tasks += 1
            else:
                t.data_requests += 1
        elif action == REFUSE:
            t = line(str(detail.get("community_id") or ""))
            code = str(detail.get("reason") or "")
            t.refused += 1
            t.assessment_refused += code == ASSESSMENT
            t.reason(code if code in REASONS_ZH else "other")
        elif action == APPROVE and outcome == "allowed":
            t = line(filed.get(target, ""))
            t.approved += 1
            t.quota_granted += _int(detail.get("quota"))
            if detail.get("narrowed"):
                t.narrowed += 1
                t.reason("narrowed")
        elif action == REJECT:
            t = line(filed.get(target, ""))
            t.rejected += 1
            t.reason("rejected")
        elif action == CALL and outcome == "allowed" and e.get("grant_id"):
            community = str(detail.get("community_id") or "") or filed.get(request_of_grant(str(e.get("grant_id"))), "")
            line(community).quota_used += 1
    out: list[LedgerLine] = []
    for community in sorted(tallies):
        t = tallies[community]
        reasons: list[LedgerReason] = [
            {"reason": code, "reason_zh": REASONS_ZH.get(code, OTHER_REASON_ZH), "count": n}
            for code, n in sorted(t.reasons.items())
        ]
        out.append(
            {
                "community_id": community,
                "community_name_zh": communities.get(community, UNSPECIFIED_ZH),
                "data_requests": t.data_requests,
                "assistance_tasks": t.assistance_tasks,
                "approved": t.approved,
                "narrowed": t.narrowed,
                "rejected": t.rejected,
                "refused": t.refused,
                "assessment_refused": t.assessment_refused,
                "quota_granted": t.quota_granted,
                "quota_used": t.quota_used,
                "reasons": reasons,
            }
        )
    return out
