"""The measures' SQL tables (migration 0011_evaluation_measures), in each tenant's schema, and the batch that
keeps them (one transaction per tenant per poll, written by consumer.py).

Fact tables (one row per natural key, merged commutatively from their events: domain.merge)
    eval_m_targets   (whistle_id, target)   a whistle's target and its answer
    eval_m_tasks     task_id                a task's verdicts (first pass, failures), missed deadline, crew
    eval_m_ratings   rating_id              an issue's or a unit's rating and who it is about
    eval_m_duties    fact_id                an alliance duty fact (meeting, shift, pledge, activity place)
  each with `anchor_at` and `quarter` (indexed): the quarter's rebuild reads its rows by it.
Counters
    eval_m_counts    (scope, period, subject, counter) -> n: the facts' contributions (domain.contributions),
                     kept by the rollups' technique (services/common/rollups.py): a replaced row takes its old
                     contributions away and adds its new ones, in the same transaction.
Others
    eval_m_processed event ids already applied (ON CONFLICT DO NOTHING in the batch's transaction: an event
                     seen twice changes nothing)
    eval_m_subjects  who a helper is (kind, unit kind, roles, home community, name) from org's events
    eval_m_board_sets, eval_m_board_entries  the frozen boards (a page of a board is one index range), written
                     by the freeze timer after the write side holds the set (handlers.py)

Per batch: one INSERT … RETURNING for the event ids, one SELECT per fact table for the keys touched, one
INSERT … ON CONFLICT DO UPDATE per fact table, and the counters' upserts in chunks of 1,000, sorted by key.
At 100× the data: fact tables grow with facts (reads use their primary keys or `quarter`), the counters
with subjects × periods × counters (index (period, scope)), and a subject's measures stay one
primary-key range (~30 rows).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert

from services.common import readside
from services.evaluation.measures import domain

TZ = DateTime(timezone=True)
M = readside.METADATA

TARGETS = Table(
    "eval_m_targets",
    M,
    Column("whistle_id", Text, primary_key=True),
    Column("target", Text, primary_key=True),
    Column("community_id", Text, nullable=False),
    Column("called", Boolean, nullable=False),
    Column("reported", Boolean, nullable=False),
    Column("in_time", Boolean, nullable=False),
    Column("blown_at", TZ),
    Column("reported_at", TZ),
    Column("anchor_at", TZ),
    Column("quarter", Text, nullable=False),
)
TASKS = Table(
    "eval_m_tasks",
    M,
    Column("task_id", Text, primary_key=True),
    Column("community_id", Text, nullable=False),
    Column("call_type", Text, nullable=False),
    Column("crew", ARRAY(Text), nullable=False),
    Column("verdicts", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("resident_failures", Integer, nullable=False),
    Column("first_pass", Boolean, nullable=False),
    Column("first_fail", Boolean, nullable=False),
    Column("missed", Boolean, nullable=False),
    Column("anchor_at", TZ),
    Column("quarter", Text, nullable=False),
)
RATINGS = Table(
    "eval_m_ratings",
    M,
    Column("rating_id", Text, primary_key=True),
    Column("community_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("subjects", ARRAY(Text), nullable=False),
    Column("score", Integer, nullable=False),
    Column("anchor_at", TZ),
    Column("rated_quarter", Text, nullable=False),
    Column("quarter", Text, nullable=False),
)
DUTIES = Table(
    "eval_m_duties",
    M,
    Column("fact_id", Text, primary_key=True),
    Column("community_id", Text, nullable=False),
    Column("duty", Text, nullable=False),
    Column("subjects", ARRAY(Text), nullable=False),
    Column("expected", Boolean, nullable=False),
    Column("met", Boolean, nullable=False),
    Column("excused", Boolean, nullable=False),
    Column("anchor_at", TZ),
    Column("quarter", Text, nullable=False),
)
FACTS: dict[str, Table] = {"target": TARGETS, "task": TASKS, "rating": RATINGS, "duty": DUTIES}
COUNTS = Table(
    "eval_m_counts",
    M,
    Column("scope", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("counter", Text, primary_key=True),
    Column("n", BigInteger, nullable=False),
)
PROCESSED = Table("eval_m_processed", M, Column("event_id", Text, primary_key=True))
SUBJECTS = Table(
    "eval_m_subjects",
    M,
    Column("subject", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("unit_kind", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    Column("community_id", Text, nullable=False),
    Column("name_zh", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
)
BOARD_SETS = Table(
    "eval_m_board_sets",
    M,
    Column("quarter", Text, primary_key=True),
    Column("community_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("corrects_version", Integer, nullable=False),
    Column("changes", Text, nullable=False),
    Column("formula", Text, nullable=False),
    Column("frozen_at", TZ, nullable=False),
)
BOARD_ENTRIES = Table(
    "eval_m_board_entries",
    M,
    Column("quarter", Text, primary_key=True),
    Column("community_id", Text, primary_key=True),
    Column("board", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("name_zh", Text, nullable=False),
    Column("score", Float, nullable=False),
    Column("workload", BigInteger, nullable=False),
    Column("explanation", Text, nullable=False),
    Column("parts", JSONB, nullable=False),
)
# What a rebuild from the events recreates (and what the rebuild test compares), in dump order.
KEY_COLS = (COUNTS.c.scope, COUNTS.c.period, COUNTS.c.subject, COUNTS.c.counter)
REBUILT: tuple[Table, ...] = (TARGETS, TASKS, RATINGS, DUTIES, COUNTS, PROCESSED, SUBJECTS)
CHUNK = 1000


# Batches go as one statement with one array parameter per column (INSERT … SELECT unnest(…), …): a few
# parameters whatever the batch's size, so the driver never parses a query of thousands of placeholders
# (a multi-row VALUES of 1,000 rows spent half the consumer's time there) and the plan is the same each time.
# An array column travels as its array literal in a text[] and is cast back.


SEP = "\x1f"  # the unit separator: joins a text column's values into one parameter (never in an id)


def _unnest(table: Table, names: Sequence[str]) -> Any:
    cols = []
    for name in names:
        col = table.c[name]
        if isinstance(col.type, ARRAY):
            cols.append(cast(func.unnest(bindparam(name, type_=ARRAY(Text))), ARRAY(Text)).label(name))
        elif isinstance(col.type, Text | BigInteger | Integer):
            # One string per column, split by the server: dumping a Python list of thousands is slower. The
            # string ends with SEP + "." (one element dropped by trim_array): "" is then one empty value.
            split = func.trim_array(func.string_to_array(bindparam(name, type_=Text), SEP), 1)
            cols.append(func.unnest(split if isinstance(col.type, Text) else cast(split, ARRAY(col.type))).label(name))
        else:
            cols.append(func.unnest(bindparam(name, type_=ARRAY(col.type))).label(name))
    return select(*cols)


def _clean(text: str) -> str:
    """A text value as PostgreSQL takes it: no NUL (a text column refuses it, and the batch would fail for
    ever), no SEP."""
    return text.replace("\x00", "").replace(SEP, "")


def _joined(table: Table, name: str, values: Sequence[Any]) -> Any:
    """A column's values as its parameter (see _unnest)."""
    col = table.c[name]
    if isinstance(col.type, ARRAY):
        return [_array_literal(list(v or ())) for v in values]
    if isinstance(col.type, Text):
        return SEP.join([*(_clean(str(v)) for v in values), "."])
    if isinstance(col.type, BigInteger | Integer):
        return SEP.join([*(str(int(v)) for v in values), "."])
    return list(values)


def _upsert_stmt(table: Table, keys: Sequence[str]) -> Any:
    names = [c.name for c in table.columns]
    stmt = insert(table).from_select(names, _unnest(table, names))
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )


def _array_literal(values: Sequence[str]) -> str:
    return "{" + ",".join('"' + _clean(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def columns(table: Table, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows as one parameter per column (the statements' arrays)."""
    return {col.name: _joined(table, col.name, [r.get(col.name) for r in rows]) for col in table.columns}


_UPSERT = {FACTS[k].name: _upsert_stmt(FACTS[k], domain.KEYS[k]) for k in FACTS}
_CLAIM = (
    insert(PROCESSED)
    .from_select(["event_id"], _unnest(PROCESSED, ["event_id"]))
    .on_conflict_do_nothing()
    .returning(PROCESSED.c.event_id)
)
COUNT_NAMES = ("scope", "period", "subject", "counter", "n")
_counts = insert(COUNTS).from_select(list(COUNT_NAMES), _unnest(COUNTS, COUNT_NAMES))
_ADD_COUNTS = _counts.on_conflict_do_update(
    index_elements=["scope", "period", "subject", "counter"], set_={"n": COUNTS.c.n + _counts.excluded.n}
)
_ZERO_KEYS = _unnest(COUNTS, COUNT_NAMES[:4])


# ---------------------------------------------------------------- the batch


def claim_events(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Record these event ids as processed; returns those not seen before (the only ones to apply)."""
    unique = sorted(set(ids))
    if not unique:
        return set()
    return {r[0] for r in conn.execute(_CLAIM, {"event_id": _joined(PROCESSED, "event_id", unique)})}


def _key_of(kind: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in domain.KEYS[kind])


def _load(conn: Connection, kind: str, keys: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The stored rows of these keys: one statement, the keys as array parameters."""
    table = FACTS[kind]
    names = domain.KEYS[kind]
    cols = [table.c[k] for k in names]
    wanted = _unnest(table, names)
    cond = tuple_(*cols).in_(wanted) if len(cols) > 1 else cols[0].in_(wanted)
    params = {name: _joined(table, name, [k[i] for k in keys]) for i, name in enumerate(names)}
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in conn.execute(select(table).where(cond), params).mappings():
        row = dict(r)
        out[_key_of(kind, row)] = row
    return out


def apply_facts(conn: Connection, partials: Mapping[str, Sequence[Mapping[str, Any]]]) -> Counter[tuple[str, ...]]:
    """Merge one batch's partial rows into the fact tables and the counters (in the caller's transaction);
    returns the counter changes applied (for tests and the quarters touched)."""
    tally: Counter[tuple[str, ...]] = Counter()
    for kind in ("target", "task", "rating", "duty"):
        found = partials.get(kind) or ()
        if not found:
            continue
        keys = sorted({_key_of(kind, p) for p in found})
        stored = _load(conn, kind, keys)
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for p in found:
            k = _key_of(kind, p)
            rows[k] = domain.merge(kind, rows.get(k, stored.get(k)), p)
        changed = []
        for k in keys:
            new = rows[k]
            old = stored.get(k)
            if old is not None and _same(kind, old, new):
                continue
            changed.append(new)
            if old is not None:
                for c in domain.contributions(kind, old):
                    tally[c[:4]] -= c[4]
            for c in domain.contributions(kind, new):
                tally[c[:4]] += c[4]
        _upsert(conn, FACTS[kind], changed, domain.KEYS[kind])
    apply_counts(conn, tally)
    return tally


def _same(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return all(_norm(old.get(c)) == _norm(new.get(c)) for c in FACTS[kind].c.keys())  # noqa: SIM118


def _norm(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(v)
    if hasattr(v, "tzinfo") and v is not None and hasattr(v, "astimezone"):
        return domain.aware(v)
    return v


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    if rows:
        conn.execute(_UPSERT[table.name], columns(table, rows))


def apply_counts(conn: Connection, tally: Mapping[tuple[str, ...], int]) -> int:
    found = sorted((k, n) for k, n in tally.items() if n)
    if not found:
        return 0
    params = {name: _joined(COUNTS, name, [k[i] for k, _ in found]) for i, name in enumerate(COUNT_NAMES[:4])}
    params["n"] = _joined(COUNTS, "n", [n for _, n in found])
    conn.execute(_ADD_COUNTS, params)
    # A counter taken back to zero is dropped, so that a rebuild (which never writes one) holds the same rows:
    # only a counter this batch took something from can be zero now.
    down = [k for k, n in found if n < 0]
    if down:
        keys = {name: _joined(COUNTS, name, [z[i] for z in down]) for i, name in enumerate(COUNT_NAMES[:4])}
        conn.execute(delete(COUNTS).where(and_(COUNTS.c.n == 0, tuple_(*KEY_COLS).in_(_ZERO_KEYS))), keys)
    return len(found)


def apply_subjects(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Who the helpers are (org's UnitJoined / PersonRegistered): the newest version of each wins."""
    newest: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        have = newest.get(r["subject"])
        if have is None or (r["version"], repr(sorted(r.items()))) > (have["version"], repr(sorted(have.items()))):
            newest[r["subject"]] = r
    found = [
        {
            k: _clean(v) if isinstance(v, str) else [_clean(x) for x in v] if isinstance(v, list) else v
            for k, v in newest[key].items()
        }
        for key in sorted(newest)
    ]
    for start in range(0, len(found), CHUNK):
        part = found[start : start + CHUNK]
        stmt = insert(SUBJECTS).values(part)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["subject"],
                set_={c.name: stmt.excluded[c.name] for c in SUBJECTS.columns if c.name != "subject"},
                where=SUBJECTS.c.version < stmt.excluded.version,
            )
        )


# ---------------------------------------------------------------- reads


def counts_of(conn: Connection, scope: str, period: str, subjects: Sequence[str]) -> dict[str, dict[str, int]]:
    """subject -> counter -> n for one scope and period (a primary-key range per subject)."""
    c = COUNTS.c
    out: dict[str, dict[str, int]] = {s: {} for s in subjects}
    if not subjects:
        return out
    rows = conn.execute(
        select(c.subject, c.counter, c.n).where(
            and_(c.scope == scope, c.period == period, c.subject.in_(list(subjects)))
        )
    )
    for r in rows:
        out.setdefault(r.subject, {})[r.counter] = int(r.n)
    return out


def helpers_in(conn: Connection, scope: str, period: str, kind_prefix: str) -> dict[str, dict[str, int]]:
    """Every helper of a kind with counters in the scope and period (the provisional board's population)."""
    c = COUNTS.c
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        select(c.subject, c.counter, c.n).where(
            and_(
                c.scope == scope,
                c.period == period,
                c.subject >= f"{kind_prefix}:",
                c.subject < f"{kind_prefix};",  # ';' follows ':' in ASCII: the kind's range of the key
            )
        )
    )
    for r in rows:
        out.setdefault(r.subject, {})[r.counter] = int(r.n)
    return out


def subjects(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(ids))
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), CHUNK):
        for r in conn.execute(select(SUBJECTS).where(SUBJECTS.c.subject.in_(wanted[start : start + CHUNK]))).mappings():
            out[r["subject"]] = dict(r)
    return out


def latest_set(conn: Connection, quarter: str, community_id: str) -> dict[str, Any] | None:
    b = BOARD_SETS.c
    row = (
        conn.execute(
            select(BOARD_SETS)
            .where(and_(b.quarter == quarter, b.community_id == community_id))
            .order_by(b.version.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def frozen_quarters(conn: Connection, quarters: Iterable[str]) -> set[str]:
    wanted = sorted(set(quarters))
    if not wanted:
        return set()
    return set(conn.execute(select(BOARD_SETS.c.quarter).where(BOARD_SETS.c.quarter.in_(wanted)).distinct()).scalars())


def dump(conn: Connection, tables: Sequence[Table] = REBUILT, community_id: str | None = None) -> bytes:
    """The tables' rows in primary-key order as text (the rebuild test compares these bytes); with
    `community_id`, only that community's rows (and counters of its scope and helpers)."""
    lines: list[str] = []
    for table in tables:
        q = select(table).order_by(*table.primary_key.columns)
        if community_id is not None:
            if "community_id" in table.c:
                q = q.where(table.c.community_id == community_id)
            elif table is COUNTS:
                q = q.where(table.c.scope == community_id)
            else:
                continue
        lines.append(f"## {table.name}")
        for r in conn.execute(q):
            lines.append(repr(tuple(_norm(v) for v in r)))
    return "\n".join(lines).encode()


def count_rows(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
