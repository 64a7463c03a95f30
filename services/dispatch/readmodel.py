"""Dispatch's SQL read models: task lists, the overdue queues and the whistle board (集结号).

Kept by the projector (services/common/projection.py) from dispatch's state topic; ListTasks, ListOverdue and
ListWhistles answer from them, GetTask and GetWhistle from the write side. A row holds the filters'
columns and `body`, the aggregate as the write side held it at `version` (BSON). A call is open while one
of its tasks is unfinished (or none is known yet): `open` is worked out in SQL from the task rows whenever
a call or one of its tasks is projected, so the board filters on it with an index instead of reading
every call's tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

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
    exists,
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

from services.common import paging, readside
from services.common.events import state_topic_for
from services.common.projection import Projection, State
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
)
TASK_COLLECTION = TaskDoc._get_collection_name()
WHISTLE_COLLECTION = WhistleDoc._get_collection_name()


def _strs(values: Any) -> list[str]:
    return [str(v) for v in values or ()]


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
    }


def _settle_open(conn: Connection, where: ColumnElement[bool]) -> None:
    """A call is open unless some of its tasks are known and all of those are finished."""
    t = TASKS.alias("t")
    known = exists().where(t.c.id == any_(WHISTLES.c.task_ids))
    unfinished = exists().where(and_(t.c.id == any_(WHISTLES.c.task_ids), not_(t.c.finished)))
    conn.execute(update(WHISTLES).where(where).values(open=or_(not_(known), unfinished)))


def _refresh(
    conn: Connection,
    states: Mapping[str, State],
    table: Table,
    row: Callable[[Mapping[str, Any], bytes | None], dict[str, Any]],
    calls: Callable[[list[str]], ColumnElement[bool]],
) -> int:
    """Bring these aggregates' rows to these states where newer, then the open flag of the calls
    `calls(changed ids)` selects; rows changed."""
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    versions = {i: s.version for i, s in states.items()}
    rows = [row(states[i].raw, states[i].body) for i in readside.newer_ids(conn, table, versions)]
    if rows:
        readside.upsert_newer(conn, table, rows)
        _settle_open(conn, calls([r["id"] for r in rows]))
    return len(rows)


def refresh_tasks(conn: Connection, states: Mapping[str, State]) -> int:
    return _refresh(conn, states, TASKS, task_row, WHISTLES.c.task_ids.overlap)


def refresh_whistles(conn: Connection, states: Mapping[str, State]) -> int:
    return _refresh(conn, states, WHISTLES, whistle_row, WHISTLES.c.id.in_)


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


def token_of(more: tuple[datetime, str] | None, fingerprint: str) -> str:
    return paging.page_token(more[0], more[1], fingerprint) if more is not None else ""


def after_of(page_token: str, fingerprint: str) -> tuple[datetime, str] | None:
    return paging.parse_page_token(page_token, fingerprint) if page_token else None
