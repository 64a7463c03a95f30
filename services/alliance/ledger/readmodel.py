"""The ledger's SQL read models, kept by the projector from the alliance's state topic (migration
0008_alliance_ledger):

- alliance_pledges: one row per pledge (filters and `body`); the open pledges are read oldest first, their
  age computed when read (now - pledged_at), never stored or scanned for.
- alliance_hours_entries + alliance_hours_balances: a row per time-bank entry, and a person's running total
  (hours, entries) added to in the same transaction as the entry row, once, when an entry is first seen
  applied: reading a balance reads one row, never the entries.
- alliance_fund_entries + alliance_fund_postings + alliance_fund_balances + alliance_fund_months: a row per
  posted entry and its balanced postings; per fund the running balance (the sum of the fund account's
  postings, debit positive), allocated and spent; per fund and local month (Asia/Shanghai) allocated, spent
  and the closing balance (the balance after the month's last entry, by the fund's sequence), all added to in
  the entry's transaction. A month without entries has no row: its closing balance is the last month's.
Entries never change once applied; a later state of one (a replay, a record seen twice) adds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    Numeric,
    Table,
    Text,
    and_,
    case,
    func,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import ColumnElement

from services.common import paging, readside
from services.common.projection import State

from . import domain
from .documents import FundEntryDoc, HoursEntryDoc, PledgeDoc

TZ = DateTime(timezone=True)
PLEDGES = Table(
    "alliance_pledges",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("unit_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("for_kind", Text, nullable=False),
    Column("for_id", Text, nullable=False),
    Column("pledged_at", TZ, nullable=False),
    Column("body", LargeBinary, nullable=False),
)
HOURS_ENTRIES = Table(
    "alliance_hours_entries",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("person_id", Text, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("hours", Numeric(14, 2), nullable=False),
    Column("source_kind", Text, nullable=False),
    Column("at", TZ, nullable=False),
    Column("counted", Boolean, nullable=False),
    Column("body", LargeBinary, nullable=False),
)
HOURS_BALANCES = Table(
    "alliance_hours_balances",
    readside.METADATA,
    Column("person_id", Text, primary_key=True),
    Column("hours", Numeric(14, 2), nullable=False),
    Column("entries", BigInteger, nullable=False),
    Column("updated_at", TZ, nullable=False),
)
FUND_ENTRIES = Table(
    "alliance_fund_entries",
    readside.METADATA,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("community_id", Text, nullable=False),
    Column("fund", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", TZ, nullable=False),
    Column("counted", Boolean, nullable=False),
    Column("body", LargeBinary, nullable=False),
)
FUND_POSTINGS = Table(
    "alliance_fund_postings",
    readside.METADATA,
    Column("entry_id", Text, primary_key=True),
    Column("account", Text, primary_key=True),
    Column("debit_fen", BigInteger, nullable=False),
    Column("credit_fen", BigInteger, nullable=False),
)
FUND_BALANCES = Table(
    "alliance_fund_balances",
    readside.METADATA,
    Column("community_id", Text, primary_key=True),
    Column("fund", Text, primary_key=True),
    Column("balance_fen", BigInteger, nullable=False),
    Column("allocated_fen", BigInteger, nullable=False),
    Column("spent_fen", BigInteger, nullable=False),
    Column("entries", BigInteger, nullable=False),
    Column("updated_at", TZ, nullable=False),
)
FUND_MONTHS = Table(
    "alliance_fund_months",
    readside.METADATA,
    Column("community_id", Text, primary_key=True),
    Column("fund", Text, primary_key=True),
    Column("month", Date, primary_key=True),
    Column("allocated_fen", BigInteger, nullable=False),
    Column("spent_fen", BigInteger, nullable=False),
    Column("closing_fen", BigInteger, nullable=False),
    Column("closing_seq", Integer, nullable=False),
)
PLEDGE_COLLECTION = PledgeDoc._get_collection_name()
HOURS_COLLECTION = HoursEntryDoc._get_collection_name()
FUND_COLLECTION = FundEntryDoc._get_collection_name()


def _held(conn: Connection, table: Table, ids: list[str]) -> dict[str, Any]:
    return {
        r.id: r for r in conn.execute(select(table.c.id, table.c.version, table.c.counted).where(table.c.id.in_(ids)))
    }


# ---------------------------------------------------------------- refreshes


def refresh_pledges(conn: Connection, states: Mapping[str, State]) -> int:
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    rows = []
    for ident in readside.newer_ids(conn, PLEDGES, {i: s.version for i, s in states.items()}):
        raw = states[ident].raw
        rows.append(
            {
                "id": ident,
                "version": states[ident].version,
                "community_id": str(raw.get("community_id") or ""),
                "unit_id": str(raw.get("unit_id") or ""),
                "status": str(raw.get("status") or ""),
                "for_kind": str(raw.get("for_kind") or ""),
                "for_id": str(raw.get("for_id") or ""),
                "pledged_at": readside.utc(raw["pledged_at"]),
                "body": states[ident].body,
            }
        )
    if rows:
        readside.upsert_newer(conn, PLEDGES, rows)
    return len(rows)


def refresh_hours(conn: Connection, states: Mapping[str, State]) -> int:
    """Entry rows where newer, and each entry's hours added to its person's balance the first time it is seen
    applied (same transaction)."""
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    held = _held(conn, HOURS_ENTRIES, list(states))
    rows: list[dict[str, Any]] = []
    add: dict[str, list[Any]] = {}
    for ident, state in states.items():
        old = held.get(ident)
        if old is not None and old.version >= state.version:
            continue
        raw = state.raw
        counted = bool(raw.get("applied"))
        hours = Decimal(str(domain.hours_value(float(raw.get("hours") or 0))))
        rows.append(
            {
                "id": ident,
                "version": state.version,
                "person_id": str(raw.get("person_id") or ""),
                "community_id": str(raw.get("community_id") or ""),
                "hours": hours,
                "source_kind": str(raw.get("source_kind") or ""),
                "at": readside.utc(raw["at"]),
                "counted": counted or bool(old is not None and old.counted),
                "body": state.body,
            }
        )
        if counted and not (old is not None and old.counted):
            person = rows[-1]["person_id"]
            at = readside.utc(raw.get("updated_at") or raw["at"])
            got = add.setdefault(person, [Decimal(0), 0, at])
            got[0] += hours
            got[1] += 1
            got[2] = max(got[2], at)
    if rows:
        readside.upsert_newer(conn, HOURS_ENTRIES, rows)
    if add:
        stmt = insert(HOURS_BALANCES).values(
            [{"person_id": p, "hours": h, "entries": n, "updated_at": at} for p, (h, n, at) in sorted(add.items())]
        )
        t = HOURS_BALANCES.c
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.person_id],
                set_={
                    "hours": t.hours + stmt.excluded.hours,
                    "entries": t.entries + stmt.excluded.entries,
                    "updated_at": func.greatest(t.updated_at, stmt.excluded.updated_at),
                },
            )
        )
    return len(rows)


def refresh_funds(conn: Connection, states: Mapping[str, State]) -> int:
    """Entry rows where newer; a posted entry seen for the first time adds its postings, and moves its fund's
    balance row and its month's row, in the same transaction."""
    if not states:
        return 0
    readside.lock_aggregates(conn, list(states))
    held = _held(conn, FUND_ENTRIES, list(states))
    rows: list[dict[str, Any]] = []
    postings: list[dict[str, Any]] = []
    balances: dict[tuple[str, str], dict[str, Any]] = {}
    months: dict[tuple[str, str, date], dict[str, Any]] = {}
    for ident, state in states.items():
        old = held.get(ident)
        if old is not None and old.version >= state.version:
            continue
        raw = state.raw
        counted = raw.get("status") == "posted"
        cid, fund, at = str(raw.get("community_id") or ""), str(raw.get("fund") or ""), readside.utc(raw["at"])
        assert at is not None
        row: dict[str, Any] = {
            "id": ident,
            "version": state.version,
            "community_id": cid,
            "fund": str(raw.get("fund") or ""),
            "kind": str(raw.get("kind") or ""),
            "amount_fen": int(raw.get("amount_fen") or 0),
            "seq": int(raw.get("seq") or 0),
            "at": readside.utc(raw["at"]),
            "counted": counted or bool(old is not None and old.counted),
            "body": state.body,
        }
        rows.append(row)
        if not counted or (old is not None and old.counted):
            continue
        account = domain.fund_account(cid, fund)
        entry_postings = [
            domain.Posting(str(p["account"]), int(p.get("debit_fen") or 0), int(p.get("credit_fen") or 0))
            for p in raw.get("postings") or ()
        ]
        postings += [
            {"entry_id": ident, "account": p.account, "debit_fen": p.debit_fen, "credit_fen": p.credit_fen}
            for p in entry_postings
        ]
        allocated = row["amount_fen"] if row["kind"] == domain.ALLOCATION else 0
        spent = row["amount_fen"] if row["kind"] == domain.SPENDING else 0
        b = balances.setdefault(
            (cid, fund),
            {"balance_fen": 0, "allocated_fen": 0, "spent_fen": 0, "entries": 0, "updated_at": row["at"]},
        )
        b["balance_fen"] += domain.fund_delta(entry_postings, account)
        b["allocated_fen"] += allocated
        b["spent_fen"] += spent
        b["entries"] += 1
        b["updated_at"] = max(b["updated_at"], row["at"])
        m = months.setdefault(
            (cid, fund, domain.local_month(at)),
            {"allocated_fen": 0, "spent_fen": 0, "closing_fen": 0, "closing_seq": -1},
        )
        m["allocated_fen"] += allocated
        m["spent_fen"] += spent
        if row["seq"] > m["closing_seq"]:
            m["closing_seq"], m["closing_fen"] = row["seq"], int(raw.get("balance_fen") or 0)
    if rows:
        readside.upsert_newer(conn, FUND_ENTRIES, rows)
    if postings:
        conn.execute(insert(FUND_POSTINGS).values(postings).on_conflict_do_nothing())
    if balances:
        stmt = insert(FUND_BALANCES).values(
            [{"community_id": c, "fund": f, **v} for (c, f), v in sorted(balances.items())]
        )
        t = FUND_BALANCES.c
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.community_id, t.fund],
                set_={
                    "balance_fen": t.balance_fen + stmt.excluded.balance_fen,
                    "allocated_fen": t.allocated_fen + stmt.excluded.allocated_fen,
                    "spent_fen": t.spent_fen + stmt.excluded.spent_fen,
                    "entries": t.entries + stmt.excluded.entries,
                    "updated_at": func.greatest(t.updated_at, stmt.excluded.updated_at),
                },
            )
        )
    if months:
        mstmt = insert(FUND_MONTHS).values(
            [{"community_id": c, "fund": f, "month": mo, **v} for (c, f, mo), v in sorted(months.items())]
        )
        m_ = FUND_MONTHS.c
        later = mstmt.excluded.closing_seq > m_.closing_seq
        conn.execute(
            mstmt.on_conflict_do_update(
                index_elements=[m_.community_id, m_.fund, m_.month],
                set_={
                    "allocated_fen": m_.allocated_fen + mstmt.excluded.allocated_fen,
                    "spent_fen": m_.spent_fen + mstmt.excluded.spent_fen,
                    "closing_fen": case((later, mstmt.excluded.closing_fen), else_=m_.closing_fen),
                    "closing_seq": func.greatest(m_.closing_seq, mstmt.excluded.closing_seq),
                },
            )
        )
    return len(rows)


REFRESH = {PLEDGE_COLLECTION: refresh_pledges, HOURS_COLLECTION: refresh_hours, FUND_COLLECTION: refresh_funds}


# ---------------------------------------------------------------- reads

Position = tuple[datetime, str]


def token_of(more: Position | None, fingerprint: str) -> str:
    return paging.page_token(more[0], more[1], fingerprint) if more is not None else ""


def after_of(page_token: str, fingerprint: str) -> Position | None:
    return paging.parse_page_token(page_token, fingerprint) if page_token else None


def list_pledges(
    *, community_id: str, unit_id: str, status: str, for_kind: str, for_id: str, size: int, after: Position | None
) -> tuple[list[PledgeDoc], Position | None]:
    """Pledges matching the filters: still pledged ones oldest first (the longest waiting on top), any other
    status newest first."""
    c = PLEDGES.c
    where: list[ColumnElement[bool]] = []
    for col, value in (
        (c.community_id, community_id),
        (c.unit_id, unit_id),
        (c.status, status),
        (c.for_kind, for_kind),
        (c.for_id, for_id),
    ):
        if value:
            where.append(col == value)
    oldest_first = status == domain.PLEDGED
    key = tuple_(c.pledged_at, c.id)
    if after is not None:
        pos = tuple_(literal(after[0]), literal(after[1]))
        where.append(key > pos if oldest_first else key < pos)
    order = (c.pledged_at, c.id) if oldest_first else (c.pledged_at.desc(), c.id.desc())
    query = select(c.id, c.pledged_at, c.body).where(and_(true(), *where)).order_by(*order).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    more = (page[-1].pledged_at, page[-1].id) if len(found) > size else None
    return [readside.document_of(PledgeDoc, r.body) for r in page], more


@dataclass(frozen=True)
class HoursBalance:
    person_id: str
    hours: float
    entries: int
    updated_at: datetime | None


def hours_balance(person_id: str) -> HoursBalance:
    t = HOURS_BALANCES.c
    with readside.connect() as conn:
        row = conn.execute(select(t.hours, t.entries, t.updated_at).where(t.person_id == person_id)).first()
    if row is None:
        return HoursBalance(person_id, 0.0, 0, None)
    return HoursBalance(person_id, float(row.hours), int(row.entries), row.updated_at)


def list_hours_entries(
    *, person_id: str, community_id: str, size: int, after: Position | None
) -> tuple[list[HoursEntryDoc], Position | None]:
    """Applied entries newest first (the fact's time, then id), of a person or of a community."""
    c = HOURS_ENTRIES.c
    where: list[ColumnElement[bool]] = [c.counted]
    if person_id:
        where.append(c.person_id == person_id)
    if community_id:
        where.append(c.community_id == community_id)
    if after is not None:
        where.append(tuple_(c.at, c.id) < tuple_(literal(after[0]), literal(after[1])))
    query = select(c.id, c.at, c.body).where(and_(*where)).order_by(c.at.desc(), c.id.desc()).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    more = (page[-1].at, page[-1].id) if len(found) > size else None
    return [readside.document_of(HoursEntryDoc, r.body) for r in page], more


def hours_of_year(community_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """A community's applied entries in [start, end), grouped by person (people in id order, entries by time)."""
    c = HOURS_ENTRIES.c
    query = (
        select(c.person_id, c.body)
        .where(c.counted, c.community_id == community_id, c.at >= start, c.at < end)
        .order_by(c.person_id, c.at, c.id)
    )
    people: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with readside.connect() as conn:
        for r in conn.execute(query.execution_options(yield_per=1000)):
            doc = readside.document_of(HoursEntryDoc, r.body)
            people[r.person_id].append(
                {
                    "at": doc.at,
                    "hours": float(doc.hours),
                    "source_kind": doc.source_kind,
                    "source_id": doc.source_id,
                    "corrects_entry_id": doc.corrects_entry_id or "",
                    "reason": doc.reason or "",
                }
            )
    return [{"person_id": p, "entries": e} for p, e in people.items()]


def fund_balances(community_id: str) -> list[dict[str, Any]]:
    t = FUND_BALANCES.c
    query = select(FUND_BALANCES).order_by(t.community_id, t.fund)
    if community_id:
        query = query.where(t.community_id == community_id)
    with readside.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def list_fund_entries(
    *, community_id: str, fund: str, size: int, after: Position | None
) -> tuple[list[FundEntryDoc], Position | None]:
    """Posted entries newest first."""
    c = FUND_ENTRIES.c
    where: list[ColumnElement[bool]] = [c.counted]
    if community_id:
        where.append(c.community_id == community_id)
    if fund:
        where.append(c.fund == fund)
    if after is not None:
        where.append(tuple_(c.at, c.id) < tuple_(literal(after[0]), literal(after[1])))
    query = select(c.id, c.at, c.body).where(and_(*where)).order_by(c.at.desc(), c.id.desc()).limit(size + 1)
    with readside.connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    more = (page[-1].at, page[-1].id) if len(found) > size else None
    return [readside.document_of(FundEntryDoc, r.body) for r in page], more


def fund_months(community_id: str, first: date, last: date) -> list[dict[str, Any]]:
    t = FUND_MONTHS.c
    query = select(FUND_MONTHS).where(t.month >= first, t.month <= last).order_by(t.community_id, t.fund, t.month)
    if community_id:
        query = query.where(t.community_id == community_id)
    with readside.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
