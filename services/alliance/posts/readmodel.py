"""Standing posts' SQL read model (kept by the projector from the alliance state topic).

- alliance_posts: one row per post (its community, name, place).
- alliance_post_shifts: one row per shift of a post (replaced with each newer state of the post).
- alliance_post_claims: one row per claim (status, times, hours), which rosters, a person's or unit's claims and
  the places taken per shift and week are read from (indexes on shift, person, unit, community + shift start).
Places taken count the claims that hold a place (claimed, served, missed); released ones do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
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
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from services.alliance.posts import domain
from services.alliance.posts.documents import PostClaimDoc, PostDoc
from services.common import paging, readside
from services.common.projection import State

POSTS = Table(
    "alliance_posts",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("place_kind", Text, nullable=False),
    Column("place_id", Text, nullable=False),
    Column("place_name", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("alliance_posts_community", "community_id", "created_at", "id"),
)
SHIFTS = Table(
    "alliance_post_shifts",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("post_id", Text, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("capacity", Integer, nullable=False),
    Index("alliance_post_shifts_post", "post_id", "starts_at"),
    Index("alliance_post_shifts_community", "community_id", "starts_at"),
)
CLAIMS = Table(
    "alliance_post_claims",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("post_id", Text, nullable=False),
    Column("post_name", Text, nullable=False),
    Column("shift_id", Text, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("unit_id", Text, nullable=False),
    Column("person_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("hours", Float, nullable=False),
    Column("by", Text, nullable=False),
    Column("checked_in_by", Text, nullable=False),
    Column("shift_starts_at", DateTime(timezone=True), nullable=False),
    Column("shift_ends_at", DateTime(timezone=True), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("checked_in_at", DateTime(timezone=True)),
    Column("released_at", DateTime(timezone=True)),
    Column("missed_at", DateTime(timezone=True)),
    Index("alliance_post_claims_shift", "shift_id"),
    Index("alliance_post_claims_person", "person_id", "shift_starts_at"),
    Index("alliance_post_claims_unit", "unit_id", "shift_starts_at"),
    Index("alliance_post_claims_community", "community_id", "shift_starts_at"),
)
POSTS_COLLECTION = PostDoc._get_collection_name()
CLAIMS_COLLECTION = PostClaimDoc._get_collection_name()


def _utc(at: Any) -> datetime | None:
    return readside.utc(at) if isinstance(at, datetime) else None


def post_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    place = raw.get("place") or {}
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "community_id": str(raw.get("community_id") or ""),
        "name": str(raw.get("name") or ""),
        "description": str(raw.get("description") or ""),
        "place_kind": str(place.get("kind") or "other"),
        "place_id": str(place.get("id") or ""),
        "place_name": str(place.get("name") or ""),
        "created_by": str(raw.get("created_by") or ""),
        "created_at": _utc(raw.get("created_at")) or datetime.now(UTC),
    }


def shift_rows(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(s["id"]),
            "post_id": raw["_id"],
            "community_id": str(raw.get("community_id") or ""),
            "starts_at": _utc(s["starts_at"]),
            "ends_at": _utc(s["ends_at"]),
            "capacity": int(s.get("capacity") or 0),
        }
        for s in raw.get("shifts") or []
    ]


def claim_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        **{k: str(raw.get(k) or "") for k in ("post_id", "post_name", "shift_id", "community_id", "unit_id")},
        **{k: str(raw.get(k) or "") for k in ("person_id", "status", "by", "checked_in_by")},
        "late": bool(raw.get("late")),
        "hours": float(raw.get("hours") or 0.0),
        **{
            k: _utc(raw.get(k))
            for k in ("shift_starts_at", "shift_ends_at", "claimed_at", "checked_in_at", "released_at", "missed_at")
        },
    }


def refresh_posts(conn: Connection, states: Mapping[str, State]) -> int:
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    newer = set(readside.newer_ids(conn, POSTS, {i: s.version for i, s in states.items()}))
    if not newer:
        return 0
    readside.upsert_newer(conn, POSTS, [post_row(states[i].raw) for i in newer])
    conn.execute(delete(SHIFTS).where(SHIFTS.c.post_id.in_(list(newer))))
    shifts = [row for i in newer for row in shift_rows(states[i].raw)]
    if shifts:
        conn.execute(insert(SHIFTS), shifts)
    return len(newer)


def refresh_claims(conn: Connection, states: Mapping[str, State]) -> int:
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    newer = readside.newer_ids(conn, CLAIMS, {i: s.version for i, s in states.items()})
    if newer:
        readside.upsert_newer(conn, CLAIMS, [claim_row(states[i].raw) for i in newer])
    return len(newer)


REFRESH = {POSTS_COLLECTION: refresh_posts, CLAIMS_COLLECTION: refresh_claims}


# ---------------------------------------------------------------- queries


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def taken_per_shift(conn: Connection, shift_ids: Sequence[str]) -> dict[str, int]:
    if not shift_ids:
        return {}
    c = CLAIMS.c
    q = (
        select(c.shift_id, func.count())
        .where(c.shift_id.in_(list(shift_ids)), c.status.in_(domain.HOLDING))
        .group_by(c.shift_id)
    )
    return {str(sid): int(n) for sid, n in conn.execute(q).all()}


def list_posts(community_id: str, size: int, token: str, weeks: int, now: datetime) -> tuple[list[dict[str, Any]], str]:
    """Posts newest first, each with its shifts from now for `weeks` weeks and their places taken."""
    fp = _fingerprint("posts", community_id)
    c = POSTS.c
    where: list[ColumnElement[bool]] = [true()]
    if community_id:
        where.append(c.community_id == community_id)
    if token:
        at, ident = paging.parse_page_token(token, fp)
        where.append(tuple_(c.created_at, c.id) < tuple_(literal(at), literal(ident)))
    with readside.connect() as conn:
        found = conn.execute(
            select(POSTS).where(and_(*where)).order_by(c.created_at.desc(), c.id.desc()).limit(size + 1)
        ).all()
        page = [dict(r._mapping) for r in found[:size]]
        s = SHIFTS.c
        shifts = conn.execute(
            select(SHIFTS)
            .where(
                s.post_id.in_([p["id"] for p in page]),
                s.ends_at > now,
                s.starts_at < now + timedelta(weeks=weeks),
            )
            .order_by(s.starts_at, s.id)
        ).all()
        counts = taken_per_shift(conn, [r.id for r in shifts])
    by_post: dict[str, list[dict[str, Any]]] = {}
    for r in shifts:
        by_post.setdefault(r.post_id, []).append({**r._mapping, "taken": counts.get(r.id, 0)})
    for p in page:
        p["shifts"] = by_post.get(p["id"], [])
    more = paging.page_token(page[-1]["created_at"], page[-1]["id"], fp) if len(found) > size else ""
    return page, more


def roster(shift_id: str) -> list[dict[str, Any]]:
    c = CLAIMS.c
    with readside.connect() as conn:
        rows = conn.execute(select(CLAIMS).where(c.shift_id == shift_id).order_by(c.claimed_at, c.id)).all()
    return [dict(r._mapping) for r in rows]


def list_claims(
    person_id: str, unit_id: str, community_id: str, status: str, size: int, token: str
) -> tuple[list[dict[str, Any]], str]:
    """Claims, latest shift first."""
    fp = _fingerprint("claims", person_id, unit_id, community_id, status)
    c = CLAIMS.c
    where: list[ColumnElement[bool]] = [true()]
    for col, value in (("person_id", person_id), ("unit_id", unit_id), ("community_id", community_id)):
        if value:
            where.append(c[col] == value)
    if status:
        where.append(c.status == status)
    if token:
        at, ident = paging.parse_page_token(token, fp)
        where.append(tuple_(c.shift_starts_at, c.id) < tuple_(literal(at), literal(ident)))
    with readside.connect() as conn:
        found = conn.execute(
            select(CLAIMS).where(and_(*where)).order_by(c.shift_starts_at.desc(), c.id.desc()).limit(size + 1)
        ).all()
    page = [dict(r._mapping) for r in found[:size]]
    more = paging.page_token(page[-1]["shift_starts_at"], page[-1]["id"], fp) if len(found) > size else ""
    return page, more


def fill_rate(community_id: str, weeks_back: int, weeks_ahead: int, now: datetime) -> list[dict[str, Any]]:
    """Per local week (Monday, Asia/Shanghai): shifts, places offered, places taken, served and missed."""
    first = domain.week_of(now) - timedelta(weeks=weeks_back)
    start = datetime.combine(first, datetime.min.time(), domain.SHANGHAI).astimezone(UTC)
    end = start + timedelta(weeks=weeks_back + weeks_ahead + 1)
    s, c = SHIFTS.c, CLAIMS.c
    where: list[ColumnElement[bool]] = [s.starts_at >= start, s.starts_at < end]
    if community_id:
        where.append(s.community_id == community_id)
    with readside.connect() as conn:
        shifts = conn.execute(select(s.id, s.starts_at, s.capacity).where(*where)).all()
        ids = [r.id for r in shifts]
        held: dict[str, dict[str, int]] = {}
        for i in range(0, len(ids), 1000):
            q = (
                select(c.shift_id, c.status, func.count())
                .where(c.shift_id.in_(ids[i : i + 1000]), c.status.in_(domain.HOLDING))
                .group_by(c.shift_id, c.status)
            )
            for sid, status, n in conn.execute(q).all():
                held.setdefault(str(sid), {})[str(status)] = int(n)
    weeks: dict[str, dict[str, Any]] = {}
    for n in range(weeks_back + weeks_ahead + 1):
        day = (first + timedelta(weeks=n)).isoformat()
        weeks[day] = {"week": day, "shifts": 0, "capacity": 0, "taken": 0, "served": 0, "missed": 0}
    for r in shifts:
        w = weeks.get(domain.week_of(r.starts_at).isoformat())
        if w is None:
            continue
        h = held.get(r.id, {})
        w["shifts"] += 1
        w["capacity"] += int(r.capacity)
        w["taken"] += sum(h.values())
        w["served"] += h.get(domain.SERVED, 0)
        w["missed"] += h.get(domain.MISSED, 0)
    return list(weeks.values())
