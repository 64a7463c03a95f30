"""The monthly board's sources on the SQL read side (services/common/readside.py): this module's OWN read-only
view of other services' read models — a separate MetaData in the tenant schema, only the columns read here —
so the publication service never imports another service's modules (tests/integration/test_publication_monthly.py
checks these columns against the migrated schema). `body` columns hold the aggregate as its write side stored it
(BSON, services/common/readside.body_of): decoded here as plain dicts.

Every query is one community's month, through the indexes migration 0012 adds
((community_id, created_at) and (community_id, done_at) on issues and tasks, (community_id, blown_at) on whistles,
(community_id, starts_at) on meetings is alliance's own), and returns rows in a fixed order: the builder is
deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import bson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    and_,
    or_,
    select,
)

from services.common import readside

TZ = DateTime(timezone=True)
SOURCES = MetaData(schema=readside.PLACEHOLDER)

ISSUES = Table(
    "intake_issues",
    SOURCES,
    Column("id", Text, primary_key=True),
    Column("created_at", TZ),
    Column("status", Text),
    Column("category", Text),
    Column("community_id", Text),
    Column("grid_id", Text),
    Column("duplicate", Boolean),
    Column("done_at", TZ),
    Column("body", LargeBinary),
)
TASKS = Table(
    "dispatch_tasks",
    SOURCES,
    Column("id", Text, primary_key=True),
    Column("created_at", TZ),
    Column("status", Text),
    Column("community_id", Text),
    Column("call_type", Text),
    Column("done_at", TZ),
    Column("overdue_at", TZ),
    Column("body", LargeBinary),
)
WHISTLES = Table(
    "dispatch_whistles",
    SOURCES,
    Column("id", Text, primary_key=True),
    Column("blown_at", TZ),
    Column("community_id", Text),
    Column("call_type", Text),
    Column("task_ids", ARRAY(Text)),
    Column("body", LargeBinary),
)
MEETINGS = Table(
    "alliance_meetings",
    SOURCES,
    Column("id", Text, primary_key=True),
    Column("community_id", Text),
    Column("title", Text),
    Column("starts_at", TZ),
    Column("place", Text),
    Column("status", Text),
    Column("invited", Integer),
    Column("on_time", Integer),
    Column("late", Integer),
    Column("excused", Integer),
    Column("absent", Integer),
)
FUND_MONTHS = Table(
    "alliance_fund_months",
    SOURCES,
    Column("community_id", Text, primary_key=True),
    Column("fund", Text, primary_key=True),
    Column("month", Date, primary_key=True),
    Column("allocated_fen", BigInteger),
    Column("spent_fen", BigInteger),
    Column("closing_fen", BigInteger),
)
FUND_BALANCES = Table(  # one row per fund of a community (4 at most): which funds it has
    "alliance_fund_balances",
    SOURCES,
    Column("community_id", Text, primary_key=True),
    Column("fund", Text, primary_key=True),
    Column("balance_fen", BigInteger),
)
RATINGS = Table(
    "evaluation_resident_ratings",
    SOURCES,
    Column("id", Text, primary_key=True),
    Column("kind", Text),
    Column("issue_id", Text),
    Column("community_id", Text),
    Column("score", Integer),
    Column("at", TZ),
)
CHECKS = Table(
    "evaluation_onsite_checks",
    SOURCES,
    Column("id", Text, primary_key=True),
    Column("community_id", Text),
    Column("task_id", Text),
    Column("passed", Boolean),
    Column("checked_at", TZ),
)
# evaluation's verdict facts per task (its measures' consumer, from TaskVerified / TaskVerificationFailed):
# verdicts = passes + failures by review or check; failures also count a resident's rejection of a pass.
VERDICTS = Table(
    "eval_m_tasks",
    SOURCES,
    Column("task_id", Text, primary_key=True),
    Column("verdicts", Integer),
    Column("failures", Integer),
    Column("resident_failures", Integer),
)
TABLES = (ISSUES, TASKS, WHISTLES, MEETINGS, FUND_MONTHS, FUND_BALANCES, RATINGS, CHECKS, VERDICTS)


def decode(body: bytes | None) -> dict[str, Any]:
    return bson.decode(body, codec_options=readside.BODY_CODEC) if body else {}


@dataclass(frozen=True)
class Month:
    community_id: str
    start: datetime  # aware, the month's first instant (Asia/Shanghai)
    end: datetime  # the next month's first instant

    @property
    def first_day(self) -> date:
        return self.start.date()


@dataclass(frozen=True)
class FundMonth:
    """A fund's month: what came in and went out, and the balance at its end (opening = closing - in + out)."""

    fund: str
    allocated_fen: int
    spent_fen: int
    closing_fen: int


@dataclass(frozen=True)
class Facts:
    # issue bodies received or done in the month (no duplicates), by (created_at, id), each with "_done_at"
    issues: list[dict[str, Any]]
    tasks: list[dict[str, Any]]  # task bodies of those issues (and tasks created or done in the month), by id
    whistles: list[dict[str, Any]]  # whistle bodies blown in the month, by (blown_at, id)
    meetings: list[Any]  # meeting rows held in the month, by (starts_at, id)
    funds: list[FundMonth]  # every fund of the community that had a balance by the month's end, by fund
    ratings: dict[str, int]  # issue id -> the reporter's (latest) rating
    checks: dict[str, bool]  # task id -> the latest on-site check passed
    verdicts: dict[str, tuple[int, int, int]]  # task id -> (verdicts, failures, resident failures)


def _in(col: Any, m: Month) -> Any:
    return and_(col >= m.start, col < m.end)


def read(m: Month) -> Facts:
    """One community's month from the read side (one connection, a handful of indexed range reads)."""
    c = m.community_id
    with readside.connect() as conn:
        issue_rows = conn.execute(
            select(ISSUES.c.id, ISSUES.c.created_at, ISSUES.c.done_at, ISSUES.c.body)
            .where(
                ISSUES.c.community_id == c,
                or_(_in(ISSUES.c.created_at, m), _in(ISSUES.c.done_at, m)),
                ISSUES.c.duplicate.is_(False),
            )
            .order_by(ISSUES.c.created_at, ISSUES.c.id)
        ).all()
        # the read model's done_at (the first time its task was done) beside the issue as stored
        issues = [{**decode(r.body), "_done_at": r.done_at} for r in issue_rows]
        ids = [r.id for r in issue_rows]
        task_rows = conn.execute(
            select(TASKS.c.id, TASKS.c.body)
            .where(TASKS.c.community_id == c, or_(_in(TASKS.c.created_at, m), _in(TASKS.c.done_at, m)))
            .order_by(TASKS.c.id)
        ).all()
        tasks = [decode(r.body) for r in task_rows]
        whistles = [
            decode(r.body)
            for r in conn.execute(
                select(WHISTLES.c.id, WHISTLES.c.body)
                .where(WHISTLES.c.community_id == c, _in(WHISTLES.c.blown_at, m))
                .order_by(WHISTLES.c.blown_at, WHISTLES.c.id)
            ).all()
        ]
        meetings = list(
            conn.execute(
                select(MEETINGS)
                .where(
                    MEETINGS.c.community_id == c,
                    _in(MEETINGS.c.starts_at, m),
                    MEETINGS.c.status.in_(("ended", "minuted")),
                )
                .order_by(MEETINGS.c.starts_at, MEETINGS.c.id)
            ).all()
        )
        funds = _funds(conn, m)
        ratings: dict[str, int] = {}
        checks: dict[str, bool] = {}
        if ids:
            for r in conn.execute(
                select(RATINGS.c.issue_id, RATINGS.c.score)
                .where(RATINGS.c.community_id == c, RATINGS.c.issue_id.in_(ids), RATINGS.c.kind == "rating")
                .order_by(RATINGS.c.at, RATINGS.c.id)
            ):
                ratings[r.issue_id] = int(r.score)
        task_ids = [t.get("_id") for t in tasks]
        if task_ids:
            for r in conn.execute(
                select(CHECKS.c.task_id, CHECKS.c.passed)
                .where(CHECKS.c.community_id == c, CHECKS.c.task_id.in_(task_ids))
                .order_by(CHECKS.c.checked_at, CHECKS.c.id)
            ):
                checks[r.task_id] = bool(r.passed)
        verdicts: dict[str, tuple[int, int, int]] = {}
        if task_ids:
            for r in conn.execute(
                select(VERDICTS).where(VERDICTS.c.task_id.in_(task_ids)).order_by(VERDICTS.c.task_id)
            ):
                verdicts[r.task_id] = (int(r.verdicts or 0), int(r.failures or 0), int(r.resident_failures or 0))
    return Facts(issues, tasks, whistles, meetings, funds, ratings, checks, verdicts)


def _funds(conn: Any, m: Month) -> list[FundMonth]:
    """Every fund of the community (its balance rows, 4 at most) that had a balance by the month's end: its
    month's row where it moved, else its balance carried over unchanged from the last month it moved before
    (opening = closing, nothing in or out). A fund whose first movement came later is left out. Bounded: one
    primary-key read per fund, never a sum of entries."""
    c = m.community_id
    moved = {
        r.fund: FundMonth(r.fund, int(r.allocated_fen), int(r.spent_fen), int(r.closing_fen))
        for r in conn.execute(
            select(
                FUND_MONTHS.c.fund, FUND_MONTHS.c.allocated_fen, FUND_MONTHS.c.spent_fen, FUND_MONTHS.c.closing_fen
            ).where(FUND_MONTHS.c.community_id == c, FUND_MONTHS.c.month == m.first_day)
        )
    }
    funds = conn.execute(
        select(FUND_BALANCES.c.fund).where(FUND_BALANCES.c.community_id == c).order_by(FUND_BALANCES.c.fund)
    ).all()
    out: list[FundMonth] = []
    for fund in sorted({r.fund for r in funds} | set(moved)):
        if fund in moved:
            out.append(moved[fund])
            continue
        before = conn.execute(
            select(FUND_MONTHS.c.closing_fen)
            .where(FUND_MONTHS.c.community_id == c, FUND_MONTHS.c.fund == fund, FUND_MONTHS.c.month < m.first_day)
            .order_by(FUND_MONTHS.c.month.desc())
            .limit(1)
        ).first()
        if before is not None:
            out.append(FundMonth(fund, 0, 0, int(before.closing_fen)))
    return out


def columns() -> Iterable[tuple[str, str]]:
    """(table, column) of every column read here (the contract test's list)."""
    for t in TABLES:
        for col in t.columns:
            yield t.name, col.name
