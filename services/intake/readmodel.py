"""Intake's SQL read model: the issue list, its search and its counts (services/common/readside.py).

Kept by the projector (services/common/projection.py) from intake's state topic; ListIssues and CountIssues
answer from it, GetIssue from the write side. A row holds the filters' columns and `body`, the issue as
the write side held it at `version` (BSON, contact still sealed), which the list answers with.

Text search is a substring match on title and description, case-insensitive, as it was on the write
side. Chinese has no spaces to split words at and most words are two characters, which a trigram index
(pg_trgm) cannot serve; so a row carries its characters and character pairs (`grams`, a GIN index) and a
query looks for the rows holding every pair of its text (every character, for one character), then
confirms the substring on the row's lower-cased text.

Counts and dashboard figures are rollups kept beside the rows in the same transaction
(services/common/rollups.py): a row's contributions (`contributions`) are added when it is written and its
previous version's taken away, so they never read the rows:

- `intake_issue_counts` (community_id, status, n): issues by status (CountIssues).
- `intake_issue_category_counts` (community_id, category, status, n): issues by category and status; an
  open duplicate counts under the status `duplicate` (it mirrors its original's status, which would count
  the same problem twice), a closed one under its closed status. The dashboard shows the open statuses.
- `intake_grid_months` (community_id, month, grid_id, n): issues received per grid per local month (the
  map's hot spots of the month; GetIssueStats).
- `intake_topic_days` (community_id, day, kind, topic, n): issues received per local day by category and by
  grid (the alliance's hot topics, 每月一题); a declined report (不予立案) leaves them when it is declined.
- `rollup_days` measure `issues_received`: issues received per local day (Asia/Shanghai), duplicates too.
- `rollup_durations` measures `received_to_whistle` (the issue's receipt to its first whistle) and
  `received_to_done` (to the first time its task was done), on the day the span ended; duplicates have
  no whistle or task of their own and are left out.
Each is kept per community and for "*" (the whole tenant). At 100x the issues the counts have the same
number of rows (communities × categories × statuses) and the day rollups grow by day, not by issue.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import bson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from services.common import paging, readside, rollups
from services.common.errors import InvalidArgument
from services.common.events import state_topic_for
from services.common.projection import Projection, State
from services.common.rollups import Tally
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
    # Facts the rollups count (issue_facts): a duplicate, its first whistle, the first time its task was done.
    Column("duplicate", Boolean, nullable=False),
    Column("whistled_at", DateTime(timezone=True)),
    Column("done_at", DateTime(timezone=True)),
    # 核实立案: waiting for a filing decision past its deadline (the subdistrict's "verification overdue" list;
    # migration 0005_filing).
    Column("verification_overdue", Boolean, nullable=False, server_default="false"),
)
COUNTS = rollups.counts_table("intake_issue_counts", Column("status", Text))
CATEGORY_COUNTS = rollups.counts_table("intake_issue_category_counts", Column("category", Text), Column("status", Text))
# Issues received per grid per local month (Asia/Shanghai; `month` is its first day), per community and "*": the
# map's hot spots of the month, read as one community's (or the tenant's) grids of one month — at most its grids'
# rows, however many issues there are.
GRID_MONTHS = rollups.counts_table("intake_grid_months", Column("month", Date), Column("grid_id", Text))
HOT_SPOTS = 20  # the grids a dashboard names, most issues first
# Issues received per local day by category and by grid (kind "category" | "grid", topic = the code or the grid
# id), per community and "*": the alliance's hot topics of the last 30 days (每月一题) read a window of one
# community's days through the primary key — days × topics rows at most, however many issues there are.
TOPIC_DAYS = rollups.counts_table("intake_topic_days", Column("day", Date), Column("kind", Text), Column("topic", Text))
ALL_COMMUNITIES = rollups.ALL_COMMUNITIES
# The rollups' measures (services/common/rollups.py).
RECEIVED = "issues_received"
RECEIVED_TO_WHISTLE = "received_to_whistle"
RECEIVED_TO_DONE = "received_to_done"
DAY_MEASURES = (RECEIVED,)
SPAN_MEASURES = (RECEIVED_TO_WHISTLE, RECEIVED_TO_DONE)
WHISTLE_KINDS = frozenset({"whistle_blown"})
DONE_KINDS = frozenset({"done", "verified"})  # verified implies done (should its done step be missing)
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


def first_at(history: Iterable[Mapping[str, Any]] | None, kinds: frozenset[str]) -> datetime | None:
    """The earliest time of the history steps of these kinds (None: there is none)."""
    times = [h["at"] for h in history or () if h.get("kind") in kinds and isinstance(h.get("at"), datetime)]
    return readside.utc(min(times, key=rollups.aware)) if times else None


def issue_facts(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the rollups count of an issue, from its document: whether it is a duplicate, when its first
    whistle was blown and when its task was first done (times from its own history, so every later state
    of the issue says the same)."""
    history = raw.get("history")
    return {
        "duplicate": bool(raw.get("duplicate_of")),
        "whistled_at": first_at(history, WHISTLE_KINDS),
        "done_at": first_at(history, DONE_KINDS),
    }


def row_of(raw: Mapping[str, Any], body: bytes | None = None) -> dict[str, Any]:
    """The read-model row of an issue document as the write side holds it (`body`: its BSON without the
    outbox, when at hand)."""
    place = raw.get("place") or {}
    title, description = str(raw.get("title") or ""), str(raw.get("description") or "")
    filing = raw.get("filing") or {}
    return {
        "verification_overdue": domain.is_verification_overdue(
            str(raw.get("status") or ""), filing.get("overdue_at") if isinstance(filing, Mapping) else None
        ),
        **issue_facts(raw),
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


def board_status(row: Mapping[Any, Any]) -> str:
    """The status an issue counts under by category: an open duplicate under `duplicate`."""
    status = str(row["status"])
    return domain.STATUS_DUPLICATE if row["duplicate"] and status not in domain.CLOSED else status


def contributions(row: Mapping[Any, Any]) -> Tally:
    """What one issue row adds to the counts and rollups (see the module docstring); a pure function of the
    row's columns in FACTS."""
    t = Tally()
    community = str(row["community_id"])
    t.count(COUNTS, community, row["status"])
    t.count(CATEGORY_COUNTS, community, row["category"], board_status(row))
    t.day(community, RECEIVED, row["created_at"])
    if row["grid_id"]:
        t.count(GRID_MONTHS, community, rollups.month_of(row["created_at"]), row["grid_id"])
    if row["status"] != domain.STATUS_DECLINED:  # 不予立案: not a topic the community has to take up
        day = rollups.local_day(row["created_at"])
        t.count(TOPIC_DAYS, community, day, "category", row["category"])
        if row["grid_id"]:
            t.count(TOPIC_DAYS, community, day, "grid", row["grid_id"])
    if not row["duplicate"]:
        if row["whistled_at"] is not None:
            t.span(community, RECEIVED_TO_WHISTLE, row["created_at"], row["whistled_at"])
        if row["done_at"] is not None:
            t.span(community, RECEIVED_TO_DONE, row["created_at"], row["done_at"])
    return t


# The columns `contributions` reads (with id and version: what a refresh reads of the rows it replaces).
FACTS = (
    ISSUES.c.status,
    ISSUES.c.category,
    ISSUES.c.community_id,
    ISSUES.c.grid_id,
    ISSUES.c.created_at,
    ISSUES.c.duplicate,
    ISSUES.c.whistled_at,
    ISSUES.c.done_at,
)


def refresh_issues(conn: Connection, states: Mapping[str, State]) -> int:
    """Bring these issues' rows (and the counts and rollups) to these states where newer; rows changed.

    Each replaced row's contributions are taken away and the new row's added, in this transaction: a
    re-delivered or older state changes nothing (it is skipped here), so nothing is counted twice."""
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    held = {
        r.id: r._mapping
        for r in conn.execute(select(ISSUES.c.id, ISSUES.c.version, *FACTS).where(ISSUES.c.id.in_(list(states))))
    }
    rows: list[dict[str, Any]] = []
    tally = Tally()
    for ident, state in states.items():
        old = held.get(ident)
        if old is not None and old["version"] >= state.version:
            continue  # the row is as new as the state already (a replay, a record seen twice)
        row = row_of(state.raw, state.body)
        rows.append(row)
        tally.update(contributions(row))
        if old is not None:
            tally.update(contributions(old), -1)
    if not rows:
        return 0
    readside.upsert_newer(conn, ISSUES, rows)
    rollups.apply(conn, tally)
    return len(rows)


def backfill(conn: Connection, *, batch: int = 500) -> int:
    """Fill the fact columns of rows written before they existed (from each row's body) and recount every
    count and rollup of intake from the rows (migration 0003; reads every row once). Returns rows read."""
    c = ISSUES.c
    after = ""
    read = 0
    while True:
        found = conn.execute(select(c.id, c.body).where(c.id > after).order_by(c.id).limit(batch)).all()
        if not found:
            break
        params = []
        for r in found:
            raw: dict[str, Any] = bson.decode(r.body, codec_options=readside.BODY_CODEC)
            facts = issue_facts(raw)
            params.append({"b_id": r.id, **facts})
        conn.execute(
            update(ISSUES)
            .where(c.id == bindparam("b_id"))
            .values(
                duplicate=bindparam("duplicate"), whistled_at=bindparam("whistled_at"), done_at=bindparam("done_at")
            ),
            params,
        )
        read += len(found)
        after = found[-1].id
    for table in (COUNTS, CATEGORY_COUNTS):
        conn.execute(delete(table))
    rollups.forget(conn, (*DAY_MEASURES, *SPAN_MEASURES))
    # Only the tables migration 0003 made: later migrations count their own (0004: grid_months).
    rollups.apply(conn, recount(conn).only(COUNTS, CATEGORY_COUNTS, rollups.DAYS, rollups.DURATIONS))
    return read


def count_grid_months(conn: Connection) -> None:
    """Issues per grid and month counted from the rows (migration 0004; reads every row once)."""
    conn.execute(delete(GRID_MONTHS))
    rollups.apply(conn, recount(conn).only(GRID_MONTHS))


def count_topic_days(conn: Connection) -> None:
    """Issues per local day by category and by grid counted from the rows (migrations 0006, and 0013 which
    leaves declined reports out; reads every row once)."""
    conn.execute(delete(TOPIC_DAYS))
    rollups.apply(conn, recount(conn).only(TOPIC_DAYS))


def recount(conn: Connection, *, community_id: str | None = None) -> Tally:
    """Every count and rollup of intake worked out again from the rows (reads them all, or one community's):
    what the projection keeps incrementally must equal this (backfill, tests, the benchmark's check)."""
    tally = Tally()
    query = select(*FACTS)
    if community_id is not None:
        query = query.where(ISSUES.c.community_id == community_id)
    for r in conn.execute(query.execution_options(yield_per=1000)):
        tally.update(contributions(r._mapping))
    return tally


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
    if flt.verification_overdue:
        where.append(c.verification_overdue.is_(True))
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


@dataclass(frozen=True)
class IssueStats:
    """The dashboard's issue figures of one community or the tenant, from the rollups (no issue row read)."""

    open_by_category: dict[tuple[str, str], int]  # (category, status) -> open issues (none left out)
    days: dict[date, dict[str, int]]  # local day -> measure (DAY_MEASURES) -> count; days with none left out
    spans: dict[str, list[int]]  # measure (SPAN_MEASURES) -> a count per bucket of rollups.BUCKETS
    hot_spots: list[tuple[str, int]]  # (grid_id, issues received) in the month of the window's last day


def issue_stats(community_id: str, first: date, last: date) -> IssueStats:
    """Open issues by category and status now, the window's day counts and span histograms, and the grids with
    most issues received in the month of its last day; reads at most categories × statuses + days × (1 + 2 ×
    11) + the community's grids rollup rows, however many issues there are."""
    key = community_id.strip() or ALL_COMMUNITIES
    c = CATEGORY_COUNTS.c
    with readside.connect() as conn:
        found = conn.execute(
            select(c.category, c.status, c.n).where(
                c.community_id == key, c.n != 0, c.status.not_in(sorted(domain.CLOSED))
            )
        )
        open_by_category = {(r.category, r.status): int(r.n) for r in found}
        days = rollups.day_counts(conn, community_id.strip(), DAY_MEASURES, first, last)
        spans = rollups.histograms(conn, community_id.strip(), SPAN_MEASURES, first, last)
        g = GRID_MONTHS.c
        hot = conn.execute(
            select(g.grid_id, g.n)
            .where(g.community_id == key, g.month == last.replace(day=1), g.n != 0)
            .order_by(g.n.desc(), g.grid_id)
            .limit(HOT_SPOTS)
        )
        hot_spots = [(r.grid_id, int(r.n)) for r in hot]
    return IssueStats(open_by_category, days, spans, hot_spots)


def topic_counts(community_id: str, first: date, last: date) -> dict[str, dict[str, int]]:
    """Issues received per category and per grid in the local days first..last (inclusive), of one community
    ("": the tenant): kind -> topic -> n, from the day rollup TOPIC_DAYS (at most days × topics rows, through
    its primary key), never the issue rows."""
    t = TOPIC_DAYS.c
    query = (
        select(t.kind, t.topic, func.sum(t.n).label("n"))
        .where(t.community_id == (community_id.strip() or ALL_COMMUNITIES), t.day.between(first, last))
        .group_by(t.kind, t.topic)
    )
    out: dict[str, dict[str, int]] = {"category": {}, "grid": {}}
    with readside.connect() as conn:
        for r in conn.execute(query):
            if int(r.n) > 0:
                out.setdefault(r.kind, {})[r.topic] = int(r.n)
    return out


def count_issues(community_id: str = "") -> dict[str, int]:
    """Issues by status, of one community or ("") the whole tenant: from counts kept beside the rows."""
    key = community_id.strip() or ALL_COMMUNITIES
    with readside.connect() as conn:
        rows = conn.execute(select(COUNTS.c.status, COUNTS.c.n).where(COUNTS.c.community_id == key, COUNTS.c.n != 0))
        return {r.status: int(r.n) for r in rows}


PROJECTION = Projection(name="intake", topics=(state_topic_for("intake"),), refresh={COLLECTION: refresh_issues})
