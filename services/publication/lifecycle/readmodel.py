"""The lifecycle's SQL read model (services/common/readside.py), kept by the projector from the publication state
topic (hongling.publication.state.v1; services/publication/readmodel.py): `publication_versions`, one row per
version without its content (the content is read by _id from the write side, one document).

ListPublications reads keyset pages newest period first, then version (period_start, number, id), filtered by
kind, scope and status (an index for each), and the feeds read released versions newest release first. `current`
marks the newest released version of its series; a refresh that writes a released row sets it for the series.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    and_,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from services.common import paging, readside
from services.common.errors import InvalidArgument
from services.common.projection import State
from services.publication.lifecycle import domain
from services.publication.lifecycle.documents import PublicationDoc

COLLECTION = PublicationDoc._get_collection_name()
PAGE_MAX, PAGE_DEFAULT = 100, 20

VERSIONS = Table(
    "publication_versions",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),  # the document's revision
    Column("kind", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("period_start", Date, nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("corrects_version", Integer, nullable=False),
    Column("changes", JSONB, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("audit_anchor", JSONB),
    Column("title_zh", Text, nullable=False),
    Column("title_en", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("reviewed_by", Text, nullable=False),
    Column("review_note", Text, nullable=False),
    Column("released_at", DateTime(timezone=True)),
    Column("released_by", Text, nullable=False),
    Column("current", Boolean, nullable=False),
    Index("publication_versions_newest", "period_start", "number", "id"),
    Index("publication_versions_kind", "kind", "period_start", "number", "id"),
    Index("publication_versions_scope", "scope", "period_start", "number", "id"),
    Index("publication_versions_status", "status", "period_start", "number", "id"),
    Index("publication_versions_released", "status", "released_at", "id"),
    Index("publication_versions_scope_released", "scope", "status", "released_at", "id"),
    Index("publication_versions_series", "kind", "scope", "period", "number"),
)


def row_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    year, month = domain.period_start(str(raw["period"]))
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "kind": str(raw["kind"]),
        "scope": str(raw["scope"]),
        "period": str(raw["period"]),
        "period_start": date(year, month, 1),
        "number": int(raw["number"]),
        "status": str(raw["status"]),
        "corrects_version": int(raw.get("corrects_version") or 0),
        "changes": list(raw.get("changes") or []),
        "content_sha256": str(raw.get("content_sha256") or ""),
        "audit_anchor": raw.get("audit_anchor") or None,
        "title_zh": str(raw.get("title_zh") or ""),
        "title_en": str(raw.get("title_en") or ""),
        "created_at": readside.utc(raw["created_at"]),
        "created_by": str(raw.get("created_by") or ""),
        "reviewed_at": readside.utc(raw.get("reviewed_at")),
        "reviewed_by": str(raw.get("reviewed_by") or ""),
        "review_note": str(raw.get("review_note") or ""),
        "released_at": readside.utc(raw.get("released_at")),
        "released_by": str(raw.get("released_by") or ""),
        "current": False,
    }


def refresh(conn: Connection, states: Mapping[str, State]) -> int:
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    fresh = readside.newer_ids(conn, VERSIONS, {i: s.version for i, s in states.items()})
    if not fresh:
        return 0
    rows = [row_of(states[i].raw) for i in fresh]
    readside.upsert_newer(conn, VERSIONS, rows)
    c = VERSIONS.c
    for kind, scope, period in sorted(
        {(r["kind"], r["scope"], r["period"]) for r in rows if r["status"] == "released"}
    ):
        series = and_(c.kind == kind, c.scope == scope, c.period == period)
        newest = select(func.max(c.number)).where(series, c.status == domain.RELEASED).scalar_subquery()
        conn.execute(update(VERSIONS).where(series).values(current=c.number == newest))
    return len(rows)


REFRESH = {COLLECTION: refresh}


# ---------------------------------------------------------------- reads


def _size(page_size: int) -> int:
    if not 0 <= page_size <= PAGE_MAX:
        raise InvalidArgument(f"每页条数应为0..{PAGE_MAX} (page_size must be 0..{PAGE_MAX})", field="page_size")
    return page_size or PAGE_DEFAULT


def _token(row: Any, fingerprint: str) -> str:
    return paging.position_token([row.period_start.isoformat(), int(row.number), row.id], fingerprint)


def _after(token: str, fingerprint: str) -> tuple[date, int, str]:
    at, number, ident = paging.parse_position_token(token, fingerprint, 3)
    try:
        return date.fromisoformat(at), int(number), str(ident)
    except (ValueError, TypeError):
        raise paging.bad_token() from None


def list_versions(
    kind: str, scope: str, period: str, status: str, page_size: int, page_token: str
) -> tuple[list[Any], str]:
    """One keyset page of versions, newest period first, then the highest version; filters are exact."""
    size = _size(page_size)
    c = VERSIONS.c
    where: list[ColumnElement[bool]] = []
    if kind:
        where.append(c.kind == kind)
    if scope:
        where.append(c.scope == scope)
    if period:
        where.append(c.period == period)
    if status:
        where.append(c.status == status)
    fingerprint = f"{kind}|{scope}|{period}|{status}"
    if page_token:
        at, number, ident = _after(page_token, fingerprint)
        where.append(tuple_(c.period_start, c.number, c.id) < tuple_(literal(at), literal(number), literal(ident)))
    query = (
        select(VERSIONS)
        .where(and_(True, *where))
        .order_by(c.period_start.desc(), c.number.desc(), c.id.desc())
        .limit(size + 1)
    )
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    return list(page), _token(page[-1], fingerprint) if len(found) > size else ""


def released(scope: str, limit: int) -> list[Any]:
    """Released versions, newest release first (a feed): the tenant's, or one scope's."""
    c = VERSIONS.c
    where: list[ColumnElement[bool]] = [c.status == domain.RELEASED]
    if scope:
        where.append(c.scope == scope)
    query = select(VERSIONS).where(and_(*where)).order_by(c.released_at.desc(), c.id.desc()).limit(limit)
    with readside.connect() as conn:
        return list(conn.execute(query).all())
