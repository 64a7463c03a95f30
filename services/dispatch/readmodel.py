"""Dispatch's SQL read models: task lists, the overdue queues and the whistle board (集结号).

Kept by the projector (services/common/projection.py) from dispatch's state topic; ListTasks, ListOverdue and
ListWhistles answer from them, GetTask and GetWhistle from the write side. A row holds the filters'
columns and `body`, the aggregate as the write side held it at `version` (BSON). A call is open while one
of its tasks is unfinished (or none is known yet): `open` is worked out in SQL from the task rows whenever
a call or one of its tasks is projected, so the board filters on it with an index instead of reading
every call's tasks.

Dashboard figures are rollups kept beside the rows in the same transaction (services/common/rollups.py;
`task_contributions`, `whistle_contributions`: a row's are added when it is written and its previous
version's taken away), so they never read the rows:

- `dispatch_task_counts` (community_id, status, overdue, n): tasks by status and whether dispatch marked
  their completion deadline missed (`deadline_missed`, set by the deadline timer: services/dispatch/
  deadlines.py). Overdue tasks now = the unfinished statuses with overdue.
- `rollup_days`, per local day (Asia/Shanghai): `whistles_blown` (calls, on the day blown),
  `whistles_answered_in_time` (calls whose first report-in, 报到 = an accept, came by the report-in
  deadline, counted on the day the call was blown: so it reads against `whistles_blown` of that day),
  `tasks_done` (on the day a task was first done), `tasks_overdue` (on the day its deadline was missed).
- `rollup_durations` `whistle_to_report_in`: a call's blowing to its first report-in, on the day of that
  report-in.
Each is kept per community and for "*" (the whole tenant); at 100x the tasks the counts keep their size
(communities × statuses × 2) and the day rollups grow by day, not by task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import bson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Integer,
    LargeBinary,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from services.common import paging, readside, rollups
from services.common.events import state_topic_for
from services.common.projection import Projection, State
from services.common.rollups import Tally
from services.dispatch import domain
from services.dispatch.documents import TaskDoc, WhistleDoc

TASKS = Table(
    "dispatch_tasks",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("finished", Boolean, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("grid_id", Text, nullable=False),
    Column("call_type", Text, nullable=False),
    Column("report_in_by", DateTime(timezone=True)),
    Column("complete_by", DateTime(timezone=True)),
    Column("crew_ids", ARRAY(Text), nullable=False),
    Column("whistle_ids", ARRAY(Text), nullable=False),
    Column("body", LargeBinary, nullable=False),
    # Facts the rollups count (task_facts): when the task was first done, when its deadline was missed.
    Column("done_at", DateTime(timezone=True)),
    Column("overdue_at", DateTime(timezone=True)),
)
WHISTLES = Table(
    "dispatch_whistles",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("blown_at", DateTime(timezone=True), nullable=False),
    Column("community_id", Text, nullable=False),
    Column("call_type", Text, nullable=False),
    Column("target_ids", ARRAY(Text), nullable=False),
    Column("task_ids", ARRAY(Text), nullable=False),
    Column("open", Boolean, nullable=False),
    Column("body", LargeBinary, nullable=False),
    # Facts the rollups count (whistle_facts): the first report-in (an accept) and whether it was in time.
    Column("first_report_at", DateTime(timezone=True)),
    Column("first_report_in_time", Boolean),
)
TASK_COUNTS = rollups.counts_table("dispatch_task_counts", Column("status", Text), Column("overdue", Boolean))
ALL_COMMUNITIES = rollups.ALL_COMMUNITIES
# The rollups' measures (services/common/rollups.py).
WHISTLES_BLOWN = "whistles_blown"
ANSWERED_IN_TIME = "whistles_answered_in_time"
TASKS_DONE = "tasks_done"
TASKS_OVERDUE = "tasks_overdue"
WHISTLE_TO_REPORT_IN = "whistle_to_report_in"
DAY_MEASURES = (WHISTLES_BLOWN, ANSWERED_IN_TIME, TASKS_DONE, TASKS_OVERDUE)
SPAN_MEASURES = (WHISTLE_TO_REPORT_IN,)
TASK_COLLECTION = TaskDoc._get_collection_name()
WHISTLE_COLLECTION = WhistleDoc._get_collection_name()


def _strs(values: Any) -> list[str]:
    return [str(v) for v in values or ()]


def _earliest(times: Iterable[Any]) -> datetime | None:
    found = [t for t in times if isinstance(t, datetime)]
    return readside.utc(min(found, key=rollups.aware)) if found else None


def task_facts(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the rollups count of a task, from its document: when it was first done (its history), and when
    its completion deadline was missed (deadline_missed, set by the deadline timer; the time of that step
    in its history, else the deadline itself). Every later state of the task says the same."""
    history = list(raw.get("history") or ())
    done_at = _earliest(h.get("at") for h in history if h.get("to_status") == domain.DONE)
    overdue_at = None
    if raw.get("deadline_missed"):
        overdue_at = _earliest(h.get("at") for h in history if h.get("action") == "deadline_missed")
        overdue_at = overdue_at or readside.utc(raw.get("complete_by")) or readside.utc(raw.get("updated_at"))
    return {"done_at": done_at, "overdue_at": overdue_at}


def whistle_facts(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the rollups count of a call, from its document: its first report-in (报到: the earliest answer
    `accept`), and whether that came by the report-in deadline (the report's own `late` mark, as dispatch
    recorded it)."""
    accepts = [r for r in raw.get("reports") or () if r.get("answer") == "accept" and r.get("reported_at")]
    if not accepts:
        return {"first_report_at": None, "first_report_in_time": None}
    first = min(accepts, key=lambda r: rollups.aware(r["reported_at"]))
    return {"first_report_at": readside.utc(first["reported_at"]), "first_report_in_time": not first.get("late")}


def task_row(raw: Mapping[str, Any], body: bytes | None = None) -> dict[str, Any]:
    status = str(raw.get("status") or "")
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "created_at": readside.utc(raw["created_at"]),
        "status": status,
        "finished": status in domain.FINISHED,
        "community_id": str(raw.get("community_id") or ""),
        "grid_id": str(raw.get("grid_id") or ""),
        "call_type": str(raw.get("call_type") or ""),
        "report_in_by": readside.utc(raw.get("report_in_by")),
        "complete_by": readside.utc(raw.get("complete_by")),
        "crew_ids": _strs(raw.get("crew_ids")),
        "whistle_ids": _strs(raw.get("whistle_ids")),
        "body": readside.body_of(raw) if body is None else body,
        **task_facts(raw),
    }


def whistle_row(raw: Mapping[str, Any], body: bytes | None = None) -> dict[str, Any]:
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "blown_at": readside.utc(raw["blown_at"]),
        "community_id": str(raw.get("community_id") or ""),
        "call_type": str(raw.get("call_type") or ""),
        "target_ids": _strs(raw.get("target_ids")),
        "task_ids": _strs(raw.get("task_ids")),
        "open": True,  # worked out from the task rows just after (_settle_open)
        "body": readside.body_of(raw) if body is None else body,
        **whistle_facts(raw),
    }


def task_contributions(row: Mapping[Any, Any]) -> Tally:
    """What one task row adds to the counts and rollups (module docstring); pure, of TASK_FACTS."""
    t = Tally()
    community = str(row["community_id"])
    t.count(TASK_COUNTS, community, row["status"], row["overdue_at"] is not None)
    if row["done_at"] is not None:
        t.day(community, TASKS_DONE, row["done_at"])
    if row["overdue_at"] is not None:
        t.day(community, TASKS_OVERDUE, row["overdue_at"])
    return t


def whistle_contributions(row: Mapping[Any, Any]) -> Tally:
    """What one call row adds to the rollups (module docstring); pure, of WHISTLE_FACTS."""
    t = Tally()
    community = str(row["community_id"])
    t.day(community, WHISTLES_BLOWN, row["blown_at"])
    if row["first_report_at"] is not None:
        if row["first_report_in_time"]:
            t.day(community, ANSWERED_IN_TIME, row["blown_at"])
        t.span(community, WHISTLE_TO_REPORT_IN, row["blown_at"], row["first_report_at"])
    return t


# The columns the contributions read (with id and version: what a refresh reads of the rows it replaces).
TASK_FACTS = (TASKS.c.status, TASKS.c.community_id, TASKS.c.done_at, TASKS.c.overdue_at)
WHISTLE_FACTS = (
    WHISTLES.c.community_id,
    WHISTLES.c.blown_at,
    WHISTLES.c.first_report_at,
    WHISTLES.c.first_report_in_time,
)


def _settle_open(conn: Connection, where: ColumnElement[bool]) -> None:
    """A call is open unless some of its tasks are known and all of those are finished."""
    t = TASKS.alias("t")
    known = exists().where(t.c.id == any_(WHISTLES.c.task_ids))
    unfinished = exists().where(and_(t.c.id == any_(WHISTLES.c.task_ids), not_(t.c.finished)))
    conn.execute(update(WHISTLES).where(where).values(open=or_(not_(known), unfinished)))


@dataclass(frozen=True)
class Kind:
    """One aggregate kind's row, facts and contributions, for _refresh and backfill."""

    table: Table
    row: Callable[[Mapping[str, Any], bytes | None], dict[str, Any]]
    facts: tuple[Any, ...]  # the columns `contributions` reads
    raw_facts: Callable[[Mapping[str, Any]], dict[str, Any]]
    contributions: Callable[[Mapping[Any, Any]], Tally]
    calls: Callable[[list[str]], ColumnElement[bool]]  # the calls whose open flag the changed rows move


TASK = Kind(TASKS, task_row, TASK_FACTS, task_facts, task_contributions, WHISTLES.c.task_ids.overlap)
WHISTLE = Kind(WHISTLES, whistle_row, WHISTLE_FACTS, whistle_facts, whistle_contributions, WHISTLES.c.id.in_)


def _refresh(conn: Connection, states: Mapping[str, State], kind: Kind) -> int:
    """Bring these aggregates' rows to these states where newer, with the counts and rollups (each replaced
    row's contributions taken away, the new row's added: a re-delivered or older state is skipped, so
    nothing is counted twice), then the open flag of the calls `kind.calls(changed ids)` selects; rows changed."""
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    table = kind.table
    held = {
        r.id: r._mapping
        for r in conn.execute(select(table.c.id, table.c.version, *kind.facts).where(table.c.id.in_(list(states))))
    }
    rows: list[dict[str, Any]] = []
    tally = Tally()
    for ident, state in states.items():
        old = held.get(ident)
        if old is not None and old["version"] >= state.version:
            continue  # the row is as new as the state already (a replay, a record seen twice)
        row = kind.row(state.raw, state.body)
        rows.append(row)
        tally.update(kind.contributions(row))
        if old is not None:
            tally.update(kind.contributions(old), -1)
    if rows:
        readside.upsert_newer(conn, table, rows)
        _settle_open(conn, kind.calls([r["id"] for r in rows]))
        rollups.apply(conn, tally)
    return len(rows)


def refresh_tasks(conn: Connection, states: Mapping[str, State]) -> int:
    return _refresh(conn, states, TASK)


def refresh_whistles(conn: Connection, states: Mapping[str, State]) -> int:
    return _refresh(conn, states, WHISTLE)


def recount(conn: Connection, *, community_id: str | None = None) -> Tally:
    """Every count and rollup of dispatch worked out again from the rows (reads them all, or one community's):
    what the projection keeps incrementally must equal this (backfill, tests, the benchmark's check)."""
    tally = Tally()
    for kind in (TASK, WHISTLE):
        query = select(*kind.facts)
        if community_id is not None:
            query = query.where(kind.table.c.community_id == community_id)
        for r in conn.execute(query.execution_options(yield_per=1000)):
            tally.update(kind.contributions(r._mapping))
    return tally


def backfill(conn: Connection, *, batch: int = 500) -> int:
    """Fill the fact columns of rows written before they existed (from each row's body) and recount dispatch's
    counts and rollups from the rows (migration 0003; reads every row once). Returns rows read."""
    read = 0
    for kind in (TASK, WHISTLE):
        c = kind.table.c
        names = list(kind.raw_facts({}))  # the fact columns (what raw_facts works out)
        after = ""
        while True:
            found = conn.execute(select(c.id, c.body).where(c.id > after).order_by(c.id).limit(batch)).all()
            if not found:
                break
            params = []
            for r in found:
                raw: dict[str, Any] = bson.decode(r.body, codec_options=readside.BODY_CODEC)
                params.append({"b_id": r.id, **kind.raw_facts(raw)})
            conn.execute(
                update(kind.table).where(c.id == bindparam("b_id")).values({n: bindparam(n) for n in names}), params
            )
            read += len(found)
            after = found[-1].id
    conn.execute(delete(TASK_COUNTS))
    rollups.forget(conn, (*DAY_MEASURES, *SPAN_MEASURES))
    rollups.apply(conn, recount(conn))
    return read


PROJECTION = Projection(
    name="dispatch",
    topics=(state_topic_for("dispatch"),),
    refresh={TASK_COLLECTION: refresh_tasks, WHISTLE_COLLECTION: refresh_whistles},
)


# ---------------------------------------------------------------- reads


def task_of(body: bytes) -> TaskDoc:
    return readside.document_of(TaskDoc, body)


def whistle_of(body: bytes) -> WhistleDoc:
    return readside.document_of(WhistleDoc, body)


def list_tasks(
    where: list[ColumnElement[bool]], size: int, after: tuple[datetime, str] | None
) -> tuple[list[TaskDoc], tuple[datetime, str] | None]:
    """Tasks newest first (created_at, id descending) matching `where`; the position after the page when
    there is more."""
    c = TASKS.c
    if after is not None:
        where = [*where, tuple_(c.created_at, c.id) < tuple_(literal(after[0]), literal(after[1]))]
    query = select(c.id, c.created_at, c.body).where(and_(true(), *where))
    query = query.order_by(c.created_at.desc(), c.id.desc()).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    more = (page[-1].created_at, page[-1].id) if len(found) > size else None
    return [task_of(r.body) for r in page], more


def task_filters(
    *,
    status: str = "",
    community_id: str = "",
    grid_id: str = "",
    assignee_id: str = "",
    whistle_id: str = "",
    call_type: str = "",
    overdue: bool = False,
    now: datetime | None = None,
) -> list[ColumnElement[bool]]:
    c = TASKS.c
    where: list[ColumnElement[bool]] = []
    for col, value in (
        ("status", status),
        ("community_id", community_id),
        ("grid_id", grid_id),
        ("call_type", call_type),
    ):
        if value.strip():
            where.append(c[col] == value.strip())
    if assignee_id.strip():
        where.append(c.crew_ids.contains([assignee_id.strip()]))
    if whistle_id.strip():
        where.append(c.whistle_ids.contains([whistle_id.strip()]))
    if overdue:
        where.append(and_(not_(c.finished), c.complete_by < (now or datetime.now(UTC))))
    return where


def list_overdue(
    community_id: str, deadline: str, size: int, after: tuple[datetime, str] | None, now: datetime
) -> tuple[list[TaskDoc], tuple[datetime, str] | None]:
    """Unfinished tasks past a deadline, most overdue first (see handlers.list_overdue); each deadline
    has its partial index (unfinished tasks only, by deadline), so the queue reads only what it shows."""
    c = TASKS.c
    late_report = and_(c.status == domain.OPEN, c.report_in_by < now)
    late_done = and_(not_(c.finished), c.complete_by < now)
    field = c.report_in_by if deadline == "report_in" else c.complete_by
    where: list[ColumnElement[bool]] = [
        late_report
        if deadline == "report_in"
        else late_done
        if deadline == "completion"
        else or_(late_report, late_done)
    ]
    if community_id.strip():
        where.append(c.community_id == community_id.strip())
    if after is not None:
        where.append(tuple_(field, c.id) > tuple_(literal(after[0]), literal(after[1])))
    query = select(c.id, field.label("due"), c.body).where(and_(*where)).order_by(field, c.id).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    more = (page[-1].due, page[-1].id) if len(found) > size and page[-1].due is not None else None
    return [task_of(r.body) for r in page], more


def list_whistles(
    community_id: str, status: str, call_type: str, responder_id: str, size: int, after: tuple[datetime, str] | None
) -> tuple[list[WhistleDoc], dict[str, TaskDoc], tuple[datetime, str] | None]:
    """The whistle board, newest first (blown_at, id descending), with the calls' tasks."""
    c = WHISTLES.c
    where: list[ColumnElement[bool]] = []
    if community_id.strip():
        where.append(c.community_id == community_id.strip())
    if call_type.strip():
        where.append(c.call_type == call_type.strip())
    if responder_id.strip():
        where.append(c.target_ids.contains([responder_id.strip()]))
    if status:
        where.append(c.open == (status == "open"))
    if after is not None:
        where.append(tuple_(c.blown_at, c.id) < tuple_(literal(after[0]), literal(after[1])))
    query = select(c.id, c.blown_at, c.body).where(and_(true(), *where))
    query = query.order_by(c.blown_at.desc(), c.id.desc()).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
        page = found[:size]
        whistles = [whistle_of(r.body) for r in page]
        task_ids = sorted({t for w in whistles for t in w.task_ids})
        tasks = (
            {
                r.id: task_of(r.body)
                for r in conn.execute(select(TASKS.c.id, TASKS.c.body).where(TASKS.c.id.in_(task_ids)))
            }
            if task_ids
            else {}
        )
    more = (page[-1].blown_at, page[-1].id) if len(found) > size else None
    return whistles, tasks, more


@dataclass(frozen=True)
class DispatchStats:
    """The dashboard's dispatch figures of one community or the tenant, from the rollups (no task row read)."""

    overdue: int  # unfinished tasks whose completion deadline dispatch marked missed
    days: dict[date, dict[str, int]]  # local day -> measure (DAY_MEASURES) -> count; days with none left out
    spans: dict[str, list[int]]  # measure (SPAN_MEASURES) -> a count per bucket of rollups.BUCKETS


def dispatch_stats(community_id: str, first: date, last: date) -> DispatchStats:
    """Overdue tasks now, and the window's day counts and report-in histogram; reads at most statuses × 2 +
    days × (4 + 11) rollup rows, however many tasks and calls there are."""
    key = community_id.strip() or ALL_COMMUNITIES
    c = TASK_COUNTS.c
    with readside.connect() as conn:
        overdue = conn.execute(
            select(func.coalesce(func.sum(c.n), 0)).where(
                c.community_id == key, c.overdue, c.status.not_in(sorted(domain.FINISHED))
            )
        ).scalar_one()
        days = rollups.day_counts(conn, community_id.strip(), DAY_MEASURES, first, last)
        spans = rollups.histograms(conn, community_id.strip(), SPAN_MEASURES, first, last)
    return DispatchStats(int(overdue), days, spans)


def token_of(more: tuple[datetime, str] | None, fingerprint: str) -> str:
    return paging.page_token(more[0], more[1], fingerprint) if more is not None else ""


def after_of(page_token: str, fingerprint: str) -> tuple[datetime, str] | None:
    return paging.parse_page_token(page_token, fingerprint) if page_token else None
