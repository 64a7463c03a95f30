"""Co-building activities' SQL read model (kept by the projector from the alliance state topic).

- alliance_activities: one row per activity with its places taken, waiting and attended counts (a community's
  activities, upcoming soonest first or past latest first).
- alliance_activity_participants: one row per participant entry of an activity (replaced with each newer state
  of the activity): a person's or unit's sign-ups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
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
    and_,
    delete,
    insert,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from services.alliance.activities import domain
from services.alliance.activities.documents import ActivityDoc
from services.common import paging, readside
from services.common.projection import State

ACTIVITIES = Table(
    "alliance_activities",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("place_name", Text, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("signup_deadline", DateTime(timezone=True), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("taken", Integer, nullable=False),
    Column("waiting", Integer, nullable=False),
    Column("attended", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("alliance_activities_community", "community_id", "starts_at", "id"),
    Index("alliance_activities_starts", "starts_at", "id"),
)
PARTICIPANTS = Table(
    "alliance_activity_participants",
    readside.METADATA,
    Column("activity_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("community_id", Text, nullable=False),
    Column("unit_id", Text, nullable=False),
    Column("person_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("attended", Boolean, nullable=False),
    Column("hours", Float, nullable=False),
    Column("signed_up_at", DateTime(timezone=True), nullable=False),
    Column("attended_at", DateTime(timezone=True)),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Index("alliance_activity_participants_person", "person_id", "starts_at"),
    Index("alliance_activity_participants_unit", "unit_id", "starts_at"),
)
COLLECTION = ActivityDoc._get_collection_name()


def _utc(at: Any) -> datetime | None:
    return readside.utc(at) if isinstance(at, datetime) else None


def _entries(raw: Mapping[str, Any]) -> list[domain.Entry]:
    fields = domain.Entry.__dataclass_fields__
    return [domain.Entry(**{k: p[k] for k in fields if k in p}) for p in raw.get("participants") or []]


def activity_row(raw: Mapping[str, Any], entries: list[domain.Entry]) -> dict[str, Any]:
    place = raw.get("place") or {}
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "community_id": str(raw.get("community_id") or ""),
        "title": str(raw.get("title") or ""),
        "kind": str(raw.get("kind") or ""),
        "place_name": str(place.get("name") or ""),
        "starts_at": _utc(raw.get("starts_at")),
        "ends_at": _utc(raw.get("ends_at")),
        "signup_deadline": _utc(raw.get("signup_deadline")) or _utc(raw.get("starts_at")),
        "capacity": int(raw.get("capacity") or 0),
        "taken": domain.placed(entries),
        "waiting": len(domain.waiting(entries)),
        "attended": sum(1 for e in entries if e.attended),
        "created_at": _utc(raw.get("created_at")) or datetime.now(UTC),
    }


def participant_rows(raw: Mapping[str, Any], entries: list[domain.Entry]) -> list[dict[str, Any]]:
    return [
        {
            "activity_id": raw["_id"],
            "key": e.key,
            "seq": e.seq,
            "community_id": str(raw.get("community_id") or ""),
            "unit_id": e.unit_id or "",
            "person_id": e.person_id or "",
            "status": e.status,
            "position": domain.position(entries, e),
            "attended": bool(e.attended),
            "hours": float(e.hours or 0.0),
            "signed_up_at": _utc(e.signed_up_at),
            "attended_at": _utc(e.attended_at),
            "starts_at": _utc(raw.get("starts_at")),
        }
        for e in entries
    ]


def refresh_activities(conn: Connection, states: Mapping[str, State]) -> int:
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    newer = readside.newer_ids(conn, ACTIVITIES, {i: s.version for i, s in states.items()})
    if not newer:
        return 0
    rows, people = [], []
    for i in newer:
        raw = states[i].raw
        entries = _entries(raw)
        rows.append(activity_row(raw, entries))
        people += participant_rows(raw, entries)
    readside.upsert_newer(conn, ACTIVITIES, rows)
    conn.execute(delete(PARTICIPANTS).where(PARTICIPANTS.c.activity_id.in_(newer)))
    if people:
        conn.execute(insert(PARTICIPANTS), people)
    return len(newer)


REFRESH = {COLLECTION: refresh_activities}


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def list_activities(
    community_id: str, when: str, size: int, token: str, now: datetime
) -> tuple[list[dict[str, Any]], str]:
    """Upcoming (not yet over: soonest first) or past (over: latest first), paged by (starts_at, id)."""
    fp = _fingerprint("activities", community_id, when)
    c = ACTIVITIES.c
    where: list[ColumnElement[bool]] = [true()]
    if community_id:
        where.append(c.community_id == community_id)
    past = when == "past"
    where.append(c.ends_at <= now if past else c.ends_at > now)
    if token:
        at, ident = paging.parse_page_token(token, fp)
        key, after = tuple_(c.starts_at, c.id), tuple_(literal(at), literal(ident))
        where.append(key < after if past else key > after)
    order = (c.starts_at.desc(), c.id.desc()) if past else (c.starts_at, c.id)
    with readside.connect() as conn:
        found = conn.execute(select(ACTIVITIES).where(and_(*where)).order_by(*order).limit(size + 1)).all()
    page = [dict(r._mapping) for r in found[:size]]
    more = paging.page_token(page[-1]["starts_at"], page[-1]["id"], fp) if len(found) > size else ""
    return page, more


def list_signups(
    person_id: str, unit_id: str, community_id: str, size: int, token: str
) -> tuple[list[dict[str, Any]], str]:
    """A person's or unit's entries, latest activity first, with the activity's title and times."""
    fp = _fingerprint("signups", person_id, unit_id, community_id)
    p, a = PARTICIPANTS.c, ACTIVITIES.c
    where: list[ColumnElement[bool]] = [true()]
    for col, value in (("person_id", person_id), ("unit_id", unit_id), ("community_id", community_id)):
        if value:
            where.append(p[col] == value)
    if token:
        at, ident = paging.parse_page_token(token, fp)
        where.append(tuple_(p.starts_at, p.activity_id) < tuple_(literal(at), literal(ident)))
    q = (
        select(PARTICIPANTS, a.title, a.kind, a.ends_at)
        .join(ACTIVITIES, a.id == p.activity_id)
        .where(and_(*where))
        .order_by(p.starts_at.desc(), p.activity_id.desc(), p.seq.desc())
        .limit(size + 1)
    )
    with readside.connect() as conn:
        found = conn.execute(q).all()
    page = [dict(r._mapping) for r in found[:size]]
    more = paging.page_token(page[-1]["starts_at"], page[-1]["activity_id"], fp) if len(found) > size else ""
    return page, more
