"""Meetings' SQL read model (services/common/readside.py), kept by the projector from the alliance state topic.

- `alliance_meetings`: one row per meeting (its community, time, place, status, agenda and decided items and
  attendance counts): a community's meetings, upcoming or past, newest first (keyset pages on
  (starts_at, id) per community).
- `alliance_meeting_attendance`: one row per attendance record (meeting × invitee): a unit's or a person's
  attendance history, newest first, for evaluation. A meeting's rows are replaced with its newer state.

Hot topics (每月一题) are intake's figures: its GetTopicCounts answers from its rollup `intake_topic_days`
(services/intake/readmodel.py), called over gRPC (peers.py) like every other look-up of another service.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    and_,
    delete,
    insert,
    literal,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from services.alliance.meetings import domain
from services.alliance.meetings.documents import MeetingDoc
from services.common import paging, readside
from services.common.errors import InvalidArgument
from services.common.projection import State

COLLECTION = MeetingDoc._get_collection_name()
PAGE_MAX, PAGE_DEFAULT = 100, 20

MEETINGS = Table(
    "alliance_meetings",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True)),
    Column("place", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("agenda_items", Integer, nullable=False),
    Column("decided_items", Integer, nullable=False),
    Column("invited", Integer, nullable=False),
    Column("on_time", Integer, nullable=False),
    Column("late", Integer, nullable=False),
    Column("excused", Integer, nullable=False),
    Column("absent", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True)),
    Index("alliance_meetings_community_starts", "community_id", "starts_at", "id"),
    Index("alliance_meetings_starts", "starts_at", "id"),
)
ATTENDANCE = Table(
    "alliance_meeting_attendance",
    readside.METADATA,
    Column("meeting_id", Text, primary_key=True),
    Column("invitee", Text, primary_key=True),  # "member_unit:<id>" | "person:<id>"
    Column("community_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("unit_id", Text, nullable=False),
    Column("person_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("alliance_attendance_unit", "unit_id", "starts_at", "meeting_id"),
    Index("alliance_attendance_person", "person_id", "starts_at", "meeting_id"),
)


def _count(raw: Mapping[str, Any], status: str) -> int:
    return sum(1 for a in raw.get("attendance") or () if a.get("status") == status)


def row_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    agenda = raw.get("agenda") or []
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "community_id": str(raw.get("community_id") or ""),
        "title": str(raw.get("title") or ""),
        "starts_at": readside.utc(raw["starts_at"]),
        "ends_at": readside.utc(raw.get("ends_at")),
        "place": str(raw.get("place") or ""),
        "status": str(raw.get("status") or ""),
        "agenda_items": len(agenda),
        "decided_items": sum(1 for i in agenda if i.get("decision")),
        "invited": len(raw.get("invitees") or ()),
        "on_time": _count(raw, domain.ON_TIME),
        "late": _count(raw, domain.LATE),
        "excused": _count(raw, domain.EXCUSED),
        "absent": _count(raw, domain.ABSENT),
        "created_at": readside.utc(raw["created_at"]),
        "updated_at": readside.utc(raw.get("updated_at")),
    }


def attendance_rows(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "meeting_id": raw["_id"],
            "invitee": str(a.get("key") or ""),
            "community_id": str(raw.get("community_id") or ""),
            "title": str(raw.get("title") or ""),
            "starts_at": readside.utc(raw["starts_at"]),
            "unit_id": str(a.get("unit_id") or ""),
            "person_id": str(a.get("person_id") or ""),
            "status": str(a.get("status") or ""),
            "at": readside.utc(a.get("at")),
        }
        for a in raw.get("attendance") or ()
    ]


def refresh_meetings(conn: Connection, states: Mapping[str, State]) -> int:
    """These meetings' rows (and their attendance rows) brought to these states where newer; rows changed."""
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    fresh = readside.newer_ids(conn, MEETINGS, {i: s.version for i, s in states.items()})
    if not fresh:
        return 0
    rows = [row_of(states[i].raw) for i in fresh]
    readside.upsert_newer(conn, MEETINGS, rows)
    conn.execute(delete(ATTENDANCE).where(ATTENDANCE.c.meeting_id.in_(fresh)))
    attendance = [a for i in fresh for a in attendance_rows(states[i].raw)]
    if attendance:
        conn.execute(insert(ATTENDANCE), attendance)
    return len(rows)


REFRESH = {COLLECTION: refresh_meetings}


# ---------------------------------------------------------------- reads


def _size(page_size: int) -> int:
    if not 0 <= page_size <= PAGE_MAX:
        raise InvalidArgument(f"每页条数应为0..{PAGE_MAX} (page_size must be 0..{PAGE_MAX})", field="page_size")
    return page_size or PAGE_DEFAULT


def list_meetings(
    community_id: str, when: str, page_size: int, page_token: str, now: datetime
) -> tuple[list[Any], str]:
    """A community's (or, "", the tenant's) meetings, newest first; `when` upcoming (not yet started), past, or all."""
    if when not in ("", "upcoming", "past"):
        raise InvalidArgument("when 应为 upcoming 或 past (when must be upcoming or past)", field="when")
    size = _size(page_size)
    c = MEETINGS.c
    where: list[ColumnElement[bool]] = []
    if community_id:
        where.append(c.community_id == community_id)
    if when == "upcoming":
        where.append(c.starts_at >= now)
    elif when == "past":
        where.append(c.starts_at < now)
    return readside.newest_first(MEETINGS, "starts_at", where, f"{community_id}|{when}", page_token, size)


def list_attendance(
    unit_id: str, person_id: str, community_id: str, page_size: int, page_token: str
) -> tuple[list[Any], str]:
    """A unit's or a person's attendance records, newest meeting first (within one community, if named)."""
    if bool(unit_id) == bool(person_id):
        raise InvalidArgument("请指定 unit_id 或 person_id 之一 (name one of unit_id, person_id)", field="unit_id")
    size = _size(page_size)
    c = ATTENDANCE.c
    where: list[ColumnElement[bool]] = [c.unit_id == unit_id] if unit_id else [c.person_id == person_id]
    if community_id:
        where.append(c.community_id == community_id)
    fingerprint = f"{unit_id}|{person_id}|{community_id}"
    if page_token:
        at, after = paging.parse_page_token(page_token, fingerprint)
        where.append(tuple_(c.starts_at, c.meeting_id) < tuple_(literal(at), literal(after)))
    query = select(ATTENDANCE).where(and_(*where)).order_by(c.starts_at.desc(), c.meeting_id.desc()).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    token = paging.page_token(page[-1].starts_at, page[-1].meeting_id, fingerprint) if len(found) > size else ""
    return list(page), token
