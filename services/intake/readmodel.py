"""Intake's SQL read model: the issue list, its search and its counts (services/common/readside.py).

Kept by the projector (services/common/projection.py) from intake's state topic; ListIssues and CountIssues
answer from it, GetIssue from the write side. A row holds the filters' columns and `body`, the issue as
the write side held it at `version` (BSON, contact still sealed), which the list answers with.

Text search is a substring match on title and description, case-insensitive, as it was on the write
side. Chinese has no spaces to split words at and most words are two characters, which a trigram index
(pg_trgm) cannot serve; so a row carries its characters and character pairs (`grams`, a GIN index) and a
query looks for the rows holding every pair of its text (every character, for one character), then
confirms the substring on the row's lower-cased text.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    LargeBinary,
    Table,
    Text,
    and_,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.sql.elements import ColumnElement

from services.common import paging, readside
from services.common.errors import InvalidArgument
from services.common.events import state_topic_for
from services.common.projection import Projection, State
from services.intake import domain
from services.intake.documents import IssueDoc

ISSUES = Table(
    "intake_issues",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True)),
    Column("status", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("urgency", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("grid_id", Text, nullable=False),
    Column("search", Text, nullable=False),
    Column("grams", ARRAY(Text), nullable=False),
    Column("body", LargeBinary, nullable=False),
)
COUNTS = Table(
    "intake_issue_counts",
    readside.METADATA,
    Column("community_id", Text, primary_key=True),
    Column("status", Text, primary_key=True),
    Column("n", BigInteger, nullable=False),
)
ALL_COMMUNITIES = "*"
COLLECTION = IssueDoc._get_collection_name()


def normalize(value: str) -> str:
    return unicodedata.normalize("NFKC", value).casefold()


def grams(value: str) -> list[str]:
    """The characters and adjacent character pairs of the normalized text (none with white space)."""
    t = normalize(value)
    found = {ch for ch in t if not ch.isspace()}
    found.update(t[i : i + 2] for i in range(len(t) - 1) if not (t[i].isspace() or t[i + 1].isspace()))
    return sorted(found)


def query_grams(value: str) -> list[str]:
    """What a row must hold to contain `value`: its pairs, or its characters where it has no pair."""
    t = normalize(value)
    pairs = {t[i : i + 2] for i in range(len(t) - 1) if not (t[i].isspace() or t[i + 1].isspace())}
    singles = {ch for ch in t if not ch.isspace()}
    covered = {ch for p in pairs for ch in p}
    return sorted(pairs | (singles - covered))


def _like_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def row_of(raw: Mapping[str, Any], body: bytes | None = None) -> dict[str, Any]:
    """The read-model row of an issue document as the write side holds it (`body`: its BSON without the
    outbox, when at hand)."""
    place = raw.get("place") or {}
    title, description = str(raw.get("title") or ""), str(raw.get("description") or "")
    return {
        "id": raw["_id"],
        "version": int(raw.get("version") or 1),
        "created_at": readside.utc(raw["created_at"]),
        "updated_at": readside.utc(raw.get("updated_at")),
        "status": str(raw.get("status") or ""),
        "category": str(raw.get("category") or ""),
        "urgency": str(raw.get("urgency") or ""),
        "channel": str(raw.get("channel") or ""),
        "community_id": str(place.get("community_id") or ""),
        "grid_id": str(place.get("grid_id") or ""),
        "search": normalize(title) + "\n" + normalize(description),
        "grams": grams(title + "\n" + description),
        "body": readside.body_of(raw) if body is None else body,
    }


def refresh_issues(conn: Connection, states: Mapping[str, State]) -> int:
    """Bring these issues' rows (and the counts) to these states where newer; rows changed."""
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    held = {
        r.id: r
        for r in conn.execute(
            select(ISSUES.c.id, ISSUES.c.version, ISSUES.c.status, ISSUES.c.community_id).where(
                ISSUES.c.id.in_(list(states))
            )
        )
    }
    rows: list[dict[str, Any]] = []
    deltas: Counter[tuple[str, str]] = Counter()
    for ident, state in states.items():
        old = held.get(ident)
        if old is not None and old.version >= state.version:
            continue  # the row is as new as the state already (a replay, a record seen twice)
        row = row_of(state.raw, state.body)
        rows.append(row)
        if old is not None:
            deltas[(old.community_id, old.status)] -= 1
            deltas[(ALL_COMMUNITIES, old.status)] -= 1
        deltas[(row["community_id"], row["status"])] += 1
        deltas[(ALL_COMMUNITIES, row["status"])] += 1
    if not rows:
        return 0
    readside.upsert_newer(conn, ISSUES, rows)
    changes = [{"community_id": c, "status": s, "n": n} for (c, s), n in sorted(deltas.items()) if n]
    if changes:
        up = insert(COUNTS).values(changes)
        conn.execute(
            up.on_conflict_do_update(
                index_elements=[COUNTS.c.community_id, COUNTS.c.status], set_={"n": COUNTS.c.n + up.excluded.n}
            )
        )
    return len(rows)


def issue_of(body: bytes) -> IssueDoc:
    return readside.document_of(IssueDoc, body)


def list_issues(flt: domain.IssueFilter, page_size: int, page_token: str) -> tuple[list[IssueDoc], str]:
    """Newest first (created_at, then id, descending), keyset pages from the read model: a page reads
    one index range however deep it is and however many issues the tenant has. `flt` is checked."""
    if not 0 <= page_size <= domain.PAGE_MAX:
        raise InvalidArgument(f"page_size must be 1..{domain.PAGE_MAX}", field="page_size")
    size = page_size or domain.PAGE_DEFAULT
    fingerprint = flt.fingerprint()
    c = ISSUES.c
    where: list[ColumnElement[bool]] = []
    if flt.ids:
        where.append(c.id.in_(list(flt.ids)))
    for name in ("status", "category", "urgency", "channel", "community_id", "grid_id"):
        value = getattr(flt, name)
        if value:
            where.append(c[name] == value)
    if flt.created_from:
        where.append(c.created_at >= readside.utc(flt.created_from))
    if flt.created_to:
        where.append(c.created_at < readside.utc(flt.created_to))
    needle = normalize(flt.text.strip())
    if needle:
        where.append(c.grams.contains(query_grams(needle)))
        where.append(c.search.like(f"%{_like_literal(needle)}%", escape="\\"))
    if page_token:
        at, after_id = paging.parse_page_token(page_token, fingerprint)
        where.append(tuple_(c.created_at, c.id) < tuple_(literal(at), literal(after_id)))
    query = select(c.id, c.created_at, c.body).where(and_(True, *where))
    query = query.order_by(c.created_at.desc(), c.id.desc()).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    token = paging.page_token(page[-1].created_at, page[-1].id, fingerprint) if len(found) > size else ""
    return [issue_of(r.body) for r in page], token


def count_issues(community_id: str = "") -> dict[str, int]:
    """Issues by status, of one community or ("") the whole tenant: from counts kept beside the rows."""
    key = community_id.strip() or ALL_COMMUNITIES
    with readside.connect() as conn:
        rows = conn.execute(select(COUNTS.c.status, COUNTS.c.n).where(COUNTS.c.community_id == key, COUNTS.c.n != 0))
        return {r.status: int(r.n) for r in rows}


PROJECTION = Projection(name="intake", topics=(state_topic_for("intake"),), refresh={COLLECTION: refresh_issues})
