"""The monthly report upward of a subdistrict (content.ReportContent): the tenant's measures from evaluation, the
ranking of its communities, the exceptions (overdue tasks, failed verifications, units that did not answer
whistles) from the SQL read side, the burden ledger (减负) from the audit log's read model, and the audit log's
signed head at the month's end.

Deterministic: everything is read for the closed month [start, end) in Asia/Shanghai and sorted; `as_of` is
the month's end, never the wall clock. Reads only the columns declared in sources.py.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import bson
from sqlalchemy import Connection, and_, func, or_, select

from services.common import context, readside
from services.common.errors import InvalidArgument
from services.common.principal import Principal
from services.common.tenants import get_tenant
from services.publication import anchor
from services.publication.content import (
    SCHEMA,
    Exceptions,
    FailedVerification,
    LedgerLine,
    OverdueTask,
    Ranking,
    Rate,
    ReportContent,
    SilentUnit,
)
from services.publication.names import public_names
from services.publication.reports import domain, peers, sources

PRINCIPAL = Principal(sub="service:publication", role="service", tenants=("*",))
# Intake's shipped catalogue (data, not code): the categories' Chinese labels.
CATALOGUE = Path(__file__).resolve().parents[2] / "intake" / "data" / "categories.toml"
METHOD_ZH = {"review": "集中评议", "onsite": "现场核验", "resident": "居民否决"}
UNIT_KINDS = ("member_unit:", "team:")  # whistle targets that are units (people are not listed as silent)


@cache
def category_labels() -> dict[str, str]:
    try:
        data = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))
    except OSError:
        return {}
    return {str(c["code"]): str(c.get("name_zh") or c["code"]) for c in data.get("category", [])}


def category_zh(code: str) -> str:
    return category_labels().get(code, code or "未分类")


def _utc(at: datetime | None) -> datetime | None:
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))


# ---------------------------------------------------------------- check


def closed_month(period: str, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) of a closed month, or InvalidArgument naming `period`."""
    try:
        start, end = domain.month_bounds(period)
    except ValueError:
        raise InvalidArgument(
            f"period must be a month YYYY-MM (报告期应为YYYY-MM格式的月份), not {period!r}", field="period"
        ) from None
    if end > (now or datetime.now(UTC)):
        raise InvalidArgument(
            f"period {period} has not closed yet; a report covers a closed month (月份尚未结束，不能生成月度报告)",
            field="period",
        )
    return start, end


def check(scope: str, period: str, *, now: datetime | None = None) -> None:
    if scope != "*":
        raise InvalidArgument(
            'scope of a report must be "*", the whole subdistrict (月度报告的范围应为整个街道/镇 "*")', field="scope"
        )
    closed_month(period, now=now)


# ---------------------------------------------------------------- measures and rankings


def rates_of(found: Any) -> list[Rate]:
    return domain.only_published(
        domain.rate(
            m.key,
            m.name_zh,
            m.name_en,
            m.numerator,
            m.denominator,
            m.rate if m.has_rate else None,
            m.lower_is_better,
        )
        for m in found.measures
    )


def rankings(period: str, communities: Mapping[str, str]) -> list[Ranking]:
    months = []
    for cid in sorted(communities):
        found = peers.measures(f"community:{cid}", period, cid)
        rates = rates_of(found)
        handled = next((int(r["denominator"]) for r in rates if r["key"] == "resolution"), 0)
        months.append(
            domain.CommunityMonth(
                community_id=cid,
                name_zh=communities[cid],
                composite=found.composite if found.has_composite else None,
                issues_handled=handled,
                rates=tuple(rates),
            )
        )
    return domain.rank(months)


# ---------------------------------------------------------------- exceptions


def _categories(conn: Connection, task_ids: set[str]) -> dict[str, str]:
    """task id -> its category code (from the task's stored document)."""
    if not task_ids:
        return {}
    t = sources.TASKS.c
    out = {}
    for row in conn.execute(select(t.id, t.body).where(t.id.in_(sorted(task_ids)))):
        out[row.id] = _category_of(row.body)
    return out


def _category_of(body: bytes | None) -> str:
    if not body:
        return ""
    try:
        return str(bson.decode(body).get("category") or "")
    except Exception:  # a body that is not a document: no category, never a failed report
        return ""


def overdue_tasks(
    conn: Connection, start: datetime, end: datetime, communities: Mapping[str, str]
) -> list[OverdueTask]:
    """Tasks past their completion deadline in the month: overdue before its end and either unfinished
    (not done by now) or done in or after the month (done late)."""
    t = sources.TASKS.c
    rows = conn.execute(
        select(t.id, t.community_id, t.complete_by, t.done_at, t.overdue_at, t.body)
        .where(
            and_(
                t.overdue_at.is_not(None),
                t.overdue_at < end,
                or_(and_(t.done_at.is_(None), t.finished.is_(False)), t.done_at >= start),
            )
        )
        .order_by(t.community_id, t.id)
    ).all()
    out: list[OverdueTask] = []
    for r in rows:
        due = _utc(r.complete_by) or _utc(r.overdue_at)
        until = min(_utc(r.done_at) or end, end)
        days = max(0, (until - due).days) if due is not None else 0
        out.append(
            {
                "community_name_zh": communities.get(r.community_id, r.community_id),
                "ref": r.id,
                "category_zh": category_zh(_category_of(r.body)),
                "due_on": domain.day(due),
                "days_overdue": days,
            }
        )
    return sorted(out, key=lambda o: (o["community_name_zh"], o["due_on"], o["ref"]))


def failed_verifications(
    conn: Connection, start: datetime, end: datetime, communities: Mapping[str, str]
) -> list[FailedVerification]:
    """The month's failed verifications: on-site checks that failed, residents' rejections of verified results,
    and review rounds closed with failed tasks (a line per round: its per-task verdicts are not on the read
    side)."""
    c, a, r = sources.CHECKS.c, sources.ACTS.c, sources.ROUNDS.c
    found: list[tuple[str, str, datetime, str]] = []  # (community, task or round, when, method)
    for row in conn.execute(
        select(c.community_id, c.task_id, c.checked_at).where(
            and_(c.checked_at >= start, c.checked_at < end, c.passed.is_(False))
        )
    ):
        found.append((row.community_id, row.task_id, row.checked_at, "onsite"))
    for row in conn.execute(
        select(a.community_id, a.task_id, a.at).where(and_(a.at >= start, a.at < end, a.kind == "rejection"))
    ):
        found.append((row.community_id, row.task_id, row.at, "resident"))
    rounds = conn.execute(
        select(r.community_id, r.id, r.closed_at, r.failed).where(
            and_(r.closed_at >= start, r.closed_at < end, r.failed > 0)
        )
    ).all()
    categories = _categories(conn, {f[1] for f in found})
    out: list[FailedVerification] = [
        {
            "community_name_zh": communities.get(cid, cid),
            "ref": ref,
            "category_zh": category_zh(categories.get(ref, "")),
            "failed_on": domain.day(at),
            "method_zh": METHOD_ZH[method],
        }
        for cid, ref, at, method in found
    ]
    out.extend(
        {
            "community_name_zh": communities.get(row.community_id, row.community_id),
            "ref": row.id,
            "category_zh": f"{int(row.failed)}项任务未通过",
            "failed_on": domain.day(row.closed_at),
            "method_zh": METHOD_ZH["review"],
        }
        for row in rounds
    )
    return sorted(out, key=lambda f: (f["community_name_zh"], f["failed_on"], f["ref"], f["method_zh"]))


def silent_units(
    conn: Connection, tenant: str, start: datetime, end: datetime, communities: Mapping[str, str]
) -> list[SilentUnit]:
    """Units called by the month's whistles that did not report in to some of them (eval_m_targets: each
    target of each whistle, called and whether it reported in)."""
    t = sources.TARGETS.c
    reported = func.count().filter(t.reported.is_(True))
    rows = conn.execute(
        select(t.community_id, t.target, func.count().label("called"), reported.label("reported"))
        .where(
            and_(
                t.called.is_(True),
                t.blown_at >= start,
                t.blown_at < end,
                or_(*(t.target.startswith(k) for k in UNIT_KINDS)),
            )
        )
        .group_by(t.community_id, t.target)
        .having(func.count() > reported)
    ).all()
    names = public_names(tenant, sorted({r.target for r in rows}))
    out: list[SilentUnit] = [
        {
            "community_name_zh": communities.get(r.community_id, r.community_id),
            "name": names.get(r.target, r.target.split(":", 1)[-1]),
            "whistles": int(r.called),
            "answered": int(r.reported),
            "missed": int(r.called) - int(r.reported),
        }
        for r in rows
    ]
    return sorted(out, key=lambda s: (s["community_name_zh"], -s["missed"], s["name"]))


# ---------------------------------------------------------------- the burden ledger


def ledger_entries(conn: Connection, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The month's ledger entries (on the (at, seq) index) and request id -> community of every request they
    name (its filing, of any month: one look-up on the (target, seq) index)."""
    e = sources.AUDIT.c
    entries = [
        dict(r._mapping)
        for r in conn.execute(
            select(e.seq, e.action, e.outcome, e.target, e.grant_id, e.detail)
            .where(and_(e.at >= start, e.at < end, e.action.in_(domain.LEDGER_ACTIONS)))
            .order_by(e.at, e.seq)
        )
    ]
    wanted = domain.requests_to_look_up(entries)
    filed: dict[str, str] = {}
    if wanted:
        for r in conn.execute(
            select(e.target, e.detail).where(and_(e.target.in_(sorted(wanted)), e.action == domain.FILE))
        ):
            filed[r.target] = str((r.detail or {}).get("community_id") or "")
    return entries, filed


def burden_ledger(conn: Connection, start: datetime, end: datetime, communities: Mapping[str, str]) -> list[LedgerLine]:
    entries, filed = ledger_entries(conn, start, end)
    return domain.ledger(entries, filed, communities)


# ---------------------------------------------------------------- the content


def build(tenant: str, scope: str, period: str, *, now: datetime | None = None) -> ReportContent:
    """The report of a closed month of the tenant (scope "*"). `now` (tests): when the month is to have closed
    by; the content does not depend on it."""
    with context.bound(tenant=tenant, principal=context.current_principal.get() or PRINCIPAL):
        check(scope, period, now=now)
        start, end = closed_month(period, now=now)
        info = get_tenant(tenant)
        communities = peers.communities()
        measures = rates_of(peers.measures("tenant", period))
        ranked = rankings(period, communities)
        with readside.connect(tenant) as conn:
            exceptions: Exceptions = {
                "overdue_tasks": overdue_tasks(conn, start, end, communities),
                "failed_verifications": failed_verifications(conn, start, end, communities),
                "silent_units": silent_units(conn, tenant, start, end, communities),
            }
            ledger = burden_ledger(conn, start, end, communities)
        head = anchor.anchor_at(end)
    zh = domain.month_zh(period)
    return {
        "schema": SCHEMA,
        "kind": "report",
        "tenant": tenant,
        "tenant_name_zh": info.name_zh,
        "scope": "*",
        "scope_name_zh": info.name_zh,
        "period": period,
        "period_zh": zh,
        "as_of": domain.as_of(end),
        "title_zh": f"{info.name_zh}{zh}工作报告",
        "title_en": f"{info.name_en}: monthly report, {period}",
        "measures": measures,
        "rankings": ranked,
        "exceptions": exceptions,
        "ledger": ledger,
        "audit_anchor": head,
    }


__all__ = ["build", "check", "closed_month"]
