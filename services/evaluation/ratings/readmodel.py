"""评单's SQL read models (services/common/readside.py), kept by the projector from the evaluation state topic.

- `evaluation_resident_ratings`: one row per reporter's decision on a verification (a rating or a
  rejection): the staff's list of a community's (or the tenant's) ratings, newest first (keyset pages on
  (at, id) per community).
- `evaluation_unit_ratings`: one row per unit rating (rater × unit × quarter): a community's, a unit's or a
  quarter's ratings, newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Index, Integer, Table, Text
from sqlalchemy.sql.elements import ColumnElement

from services.common import readside
from services.common.errors import InvalidArgument
from services.common.projection import State
from services.evaluation.ratings.documents import ResidentActDoc, UnitRatingDoc

PAGE_MAX, PAGE_DEFAULT = 100, 20

ACTS = Table(
    "evaluation_resident_ratings",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("issue_id", Text, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("call_type", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("evaluation_resident_ratings_community", "community_id", "at", "id"),
    Index("evaluation_resident_ratings_at", "at", "id"),
)
UNIT_RATINGS = Table(
    "evaluation_unit_ratings",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("unit_id", Text, nullable=False),
    Column("unit_name_zh", Text, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("quarter", Text, nullable=False),
    Column("rater_kind", Text, nullable=False),
    Column("rater", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("rated_at", DateTime(timezone=True), nullable=False),
    Index("evaluation_unit_ratings_community", "community_id", "rated_at", "id"),
    Index("evaluation_unit_ratings_unit", "unit_id", "quarter", "rated_at", "id"),
    Index("evaluation_unit_ratings_at", "rated_at", "id"),
)


def act_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "kind": str(raw.get("kind") or ""),
        "issue_id": str(raw.get("issue_id") or ""),
        "task_id": str(raw.get("task_id") or ""),
        "community_id": str(raw.get("community_id") or ""),
        "call_type": str(raw.get("call_type") or ""),
        "score": int(raw.get("score") or 0),
        "comment": str(raw.get("comment") or ""),
        "reason": str(raw.get("reason") or ""),
        "attempt": int(raw.get("attempt") or 0),
        "at": readside.utc(raw["at"]),
    }


def unit_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "unit_id": str(raw.get("unit_id") or ""),
        "unit_name_zh": str(raw.get("unit_name_zh") or ""),
        "community_id": str(raw.get("community_id") or ""),
        "quarter": str(raw.get("quarter") or ""),
        "rater_kind": str(raw.get("rater_kind") or ""),
        "rater": str(raw.get("rater") or ""),
        "score": int(raw.get("score") or 0),
        "comment": str(raw.get("comment") or ""),
        "recorded_by": str(raw.get("recorded_by") or ""),
        "rated_at": readside.utc(raw["rated_at"]),
    }


def _refresher(table: Table, row_of: Any) -> Any:
    def refresh(conn: Connection, states: Mapping[str, State]) -> int:
        if not states:
            return 0
        fresh = readside.newer_ids(conn, table, {i: s.version for i, s in states.items()})
        if not fresh:
            return 0
        readside.upsert_newer(conn, table, [row_of(states[i].raw) for i in fresh])
        return len(fresh)

    return refresh


REFRESH = {
    ResidentActDoc._get_collection_name(): _refresher(ACTS, act_row),
    UnitRatingDoc._get_collection_name(): _refresher(UNIT_RATINGS, unit_row),
}


def _size(page_size: int) -> int:
    if not 0 <= page_size <= PAGE_MAX:
        raise InvalidArgument(f"每页条数应为0..{PAGE_MAX} (page_size must be 0..{PAGE_MAX})", field="page_size")
    return page_size or PAGE_DEFAULT


def list_acts(community_id: str, kind: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    """Residents' ratings and rejections of a community (or, "", the tenant), newest first."""
    size = _size(page_size)
    c = ACTS.c
    where: list[ColumnElement[bool]] = []
    if community_id:
        where.append(c.community_id == community_id)
    if kind:
        where.append(c.kind == kind)
    return readside.newest_first(ACTS, "at", where, f"{community_id}|{kind}", page_token, size)


def list_unit_ratings(
    community_id: str, unit_id: str, quarter: str, page_size: int, page_token: str
) -> tuple[list[Any], str]:
    """Unit ratings of a community (or the tenant), a unit and/or a quarter, newest first."""
    size = _size(page_size)
    c = UNIT_RATINGS.c
    where: list[ColumnElement[bool]] = []
    if community_id:
        where.append(c.community_id == community_id)
    if unit_id:
        where.append(c.unit_id == unit_id)
    if quarter:
        where.append(c.quarter == quarter)
    return readside.newest_first(
        UNIT_RATINGS, "rated_at", where, f"{community_id}|{unit_id}|{quarter}", page_token, size
    )
