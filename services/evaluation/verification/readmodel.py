"""Verification's SQL read model (services/common/readside.py), kept by the projector from the evaluation state
topic (hongling.evaluation.state.v1; services/evaluation/readmodel.py).

- `evaluation_review_rounds`: one row per review round (community, status, counts of its tasks' verdicts):
  a community's rounds, newest first (keyset pages on (created_at, id) per community, and per status).
- `evaluation_onsite_checks`: one row per on-site check (community, task, outcome, the place flag): a
  community's checks, or a task's, newest first.

The verification queue itself is dispatch's: its done tasks per community, from dispatch's read model
(ListTasks status=done; the index (community_id, status, created_at, id) is migration 0009's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    Table,
    Text,
)
from sqlalchemy.sql.elements import ColumnElement

from services.common import readside
from services.common.errors import InvalidArgument
from services.common.projection import State
from services.evaluation.verification import domain
from services.evaluation.verification.documents import CheckDoc, RoundDoc

ROUND_COLLECTION = RoundDoc._get_collection_name()
CHECK_COLLECTION = CheckDoc._get_collection_name()
PAGE_MAX, PAGE_DEFAULT = 100, 20

ROUNDS = Table(
    "evaluation_review_rounds",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("convenor", Text, nullable=False),
    Column("tasks", Integer, nullable=False),
    Column("reviewers", Integer, nullable=False),
    Column("quorum", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Index("evaluation_rounds_community", "community_id", "created_at", "id"),
    Index("evaluation_rounds_community_status", "community_id", "status", "created_at", "id"),
    Index("evaluation_rounds_created", "created_at", "id"),
)
CHECKS = Table(
    "evaluation_onsite_checks",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("inspector", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("place_flagged", Boolean, nullable=False),
    Column("distance_m", Float, nullable=False),
    Column("photos", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Index("evaluation_checks_community", "community_id", "checked_at", "id"),
    Index("evaluation_checks_task", "task_id", "checked_at", "id"),
    Index("evaluation_checks_checked", "checked_at", "id"),
)


def round_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    tasks = raw.get("tasks") or []
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "community_id": str(raw.get("community_id") or ""),
        "title": str(raw.get("title") or ""),
        "status": str(raw.get("status") or ""),
        "convenor": str(raw.get("convenor") or ""),
        "tasks": len(tasks),
        "reviewers": len(raw.get("reviewers") or ()),
        "quorum": int(raw.get("quorum") or 0),
        "passed": sum(1 for t in tasks if t.get("verdict") == domain.PASSED),
        "failed": sum(1 for t in tasks if t.get("verdict") == domain.FAILED),
        "created_at": readside.utc(raw["created_at"]),
        "closed_at": readside.utc(raw.get("closed_at")),
    }


def check_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "community_id": str(raw.get("community_id") or ""),
        "task_id": str(raw.get("task_id") or ""),
        "inspector": str(raw.get("inspector") or ""),
        "passed": bool(raw.get("passed")),
        "place_flagged": bool(raw.get("place_flagged")),
        "distance_m": float(raw.get("distance_m", -1.0) or 0.0),
        "photos": len(raw.get("photos") or ()),
        "attempt": int(raw.get("attempt") or 1),
        "checked_at": readside.utc(raw["checked_at"]),
    }


def _refresh(table: Table, row_of: Any) -> Any:
    def refresh(conn: Connection, states: Mapping[str, State]) -> int:
        if not states:
            return 0
        readside.lock_aggregates(conn, list(states))
        fresh = readside.newer_ids(conn, table, {i: s.version for i, s in states.items()})
        if not fresh:
            return 0
        rows = [row_of(states[i].raw) for i in fresh]
        readside.upsert_newer(conn, table, rows)
        return len(rows)

    return refresh


refresh_rounds = _refresh(ROUNDS, round_row)
refresh_checks = _refresh(CHECKS, check_row)
REFRESH = {ROUND_COLLECTION: refresh_rounds, CHECK_COLLECTION: refresh_checks}


# ---------------------------------------------------------------- reads


def _size(page_size: int) -> int:
    if not 0 <= page_size <= PAGE_MAX:
        raise InvalidArgument(f"每页条数应为0..{PAGE_MAX} (page_size must be 0..{PAGE_MAX})", field="page_size")
    return page_size or PAGE_DEFAULT


def list_rounds(community_id: str, status: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    """A community's (or, "", the tenant's) review rounds, newest first; `status` open (also closing) or closed."""
    if status not in ("", "open", "closed"):
        raise InvalidArgument("status 应为 open 或 closed (status must be open or closed)", field="status")
    size = _size(page_size)
    c = ROUNDS.c
    where: list[ColumnElement[bool]] = []
    if community_id:
        where.append(c.community_id == community_id)
    if status == "closed":
        where.append(c.status == domain.CLOSED)
    elif status == "open":
        where.append(c.status.in_((domain.OPEN, domain.CLOSING)))
    return readside.newest_first(ROUNDS, "created_at", where, f"{community_id}|{status}", page_token, size)


def list_checks(community_id: str, task_id: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    """A community's (or the tenant's) on-site checks, or one task's, newest first."""
    size = _size(page_size)
    c = CHECKS.c
    where: list[ColumnElement[bool]] = []
    if community_id:
        where.append(c.community_id == community_id)
    if task_id:
        where.append(c.task_id == task_id)
    return readside.newest_first(CHECKS, "checked_at", where, f"{community_id}|{task_id}", page_token, size)
