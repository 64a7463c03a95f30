"""The audit log's SQL read model: its pages and a grant's trail (services/common/readside.py).

The log itself (services/common/audit.py, database `hl_audit`) stays the source of truth: appends,
the hash chain, verification and export read it. Every page — a tenant's, an action's, an actor's, a
grant's uses — is read here from `audit_entries` (migration 0001_read_models), one table per tenant's
schema (`hl_<tenant>`; entries of no tenant in `hl_district`), with (action, seq), (actor, seq) and
(grant_id, seq) indexes: a page reads one index range, however long the log and however deep the page.

AuditProjection (run by `python -m services.projector`) keeps it: it tails the log from
`audit_cursor.last_seq` (one row, district schema), reading the next entries by _id (`$in` of the next
seqs: on the local FerretDB an _id range would scan the log), up to the first seq not there yet (the
log is contiguous), and writes them with their cursor in one transaction: a crash or a replay (cursor
moved back) writes nothing twice (the seq is the key; ON CONFLICT DO NOTHING). A row keeps the time as
chained (RFC 3339 text) beside `at` (timestamptz, for SQL) and the detail as JSONB, so the Entry read
back is the one appended: its hash verifies.

The read model is eventually consistent (typically well under a second behind the log): a page may not
yet show an entry appended a moment ago.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    Row,
    Select,
    Table,
    Text,
    and_,
    cast,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.sql.elements import ColumnElement

from services.common import metrics, readside
from services.common.audit import GENESIS, AuditLog, Entry, entry_from_doc, entry_hash
from services.common.projection import FAILURES, PROJECTED, PROJECTION_LAG, ROWS_WRITTEN
from services.common.tenants import tenant_slugs

log = logging.getLogger(__name__)

NAME = "audit"  # the projection's label on the projection metrics
CURSOR_ID = 1

ENTRIES = Table(
    "audit_entries",
    readside.METADATA,
    Column("seq", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("grant_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("detail", JSONB, nullable=False),
    Column("time", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
)
CURSOR = Table(
    "audit_cursor",
    readside.METADATA,
    Column("id", Integer, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

# The entries table of each schema, named by its schema (a UNION ALL over several tenants cannot map one
# placeholder to several schemas): made from ENTRIES on first use.
_EXPLICIT = MetaData()
_explicit_lock = threading.Lock()


def entries_in(schema: str) -> Table:
    """The entries table of one schema by its own name (for queries over several schemas)."""
    with _explicit_lock:
        found = _EXPLICIT.tables.get(f"{schema}.audit_entries")
        return found if found is not None else ENTRIES.to_metadata(_EXPLICIT, schema=schema)


def parse_time(value: str) -> datetime:
    """An entry's RFC 3339 UTC time ("…Z") as a datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


# The entry's fields a row holds as they are (its tenant is the row's schema; `at` is its time, parsed).
_FIELDS = tuple(f.name for f in fields(Entry) if f.name != "tenant")


def row_of(entry: Entry) -> dict[str, Any]:
    """The read-model row of an entry."""
    row: dict[str, Any] = {name: getattr(entry, name) for name in _FIELDS}
    row["detail"] = dict(entry.detail)
    row["at"] = parse_time(entry.time)
    return row


def entry_of(row: Row[Any], tenant: str) -> Entry:
    r = row._mapping
    return Entry(tenant=tenant, **{name: r[name] for name in _FIELDS})


# ---------------------------------------------------------------- reading


def _known(tenants: Collection[str]) -> list[str]:
    """The tenants asked for that have a schema ("" = the district level), in one order."""
    known = {*tenant_slugs(), readside.DISTRICT}
    return sorted(t for t in set(tenants) if t in known)


def _newest(
    table: Table,
    tenant: str,
    *,
    action: str | None,
    actor: str | None,
    grant_id: str | None,
    before: int | None,
    limit: int,
) -> Select[Any]:
    c = table.c
    where: list[ColumnElement[bool]] = []
    if action is not None:
        where.append(c.action == action)
    if actor is not None:
        where.append(c.actor == actor)
    if grant_id is not None:
        # `<> ''` lets the planner use the partial index (grant_id, seq) WHERE grant_id <> '' for any value.
        where.extend((c.grant_id == grant_id, c.grant_id != ""))
    if before is not None:
        where.append(c.seq < before)
    return (
        select(*table.columns, cast(literal(tenant), Text).label("tenant"))
        .where(and_(True, *where))
        .order_by(c.seq.desc())
        .limit(limit)
    )


def page(
    *,
    tenant: str | None = None,
    tenants: Collection[str] | None = None,
    action: str | None = None,
    actor: str | None = None,
    grant_id: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[Entry], int | None]:
    """Entries newest first, at most `limit`, with seq below `before` (None: from the newest); and the
    `before` that continues (the last seq shown), or None when there are no more.

    Of one tenant ("" = the district level), or any of `tenants`, or (both None) every tenant and the
    district level; with exactly this action, actor, grant (None: any). One tenant reads its schema's
    index range; several read each schema's newest `limit + 1` (UNION ALL), merged by seq."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if tenant is not None:
        wanted = [tenant]
    elif tenants is not None:
        wanted = list(tenants)
    else:
        wanted = [t for t, _ in readside.all_schemas()]
    schemas = _known(wanted)
    if not schemas:
        return [], None
    filters: dict[str, Any] = {"action": action, "actor": actor, "grant_id": grant_id, "before": before}
    if len(schemas) == 1:
        with readside.connect(schemas[0]) as conn:
            rows = conn.execute(_newest(ENTRIES, schemas[0], limit=limit + 1, **filters)).all()
    else:
        parts = [_newest(entries_in(readside.schema_for(t)), t, limit=limit + 1, **filters) for t in schemas]
        merged = union_all(*parts).subquery("entries")
        query = select(merged).order_by(merged.c.seq.desc()).limit(limit + 1)
        with readside.engine().connect() as conn:
            rows = conn.execute(query).all()
    shown = [entry_of(r, r.tenant) for r in rows[:limit]]
    return shown, (shown[-1].seq if len(rows) > limit and shown else None)


def projected_seq() -> int:
    """The last seq the read model holds (0: none yet)."""
    with readside.connect(readside.DISTRICT) as conn:
        found = conn.execute(select(CURSOR.c.last_seq).where(CURSOR.c.id == CURSOR_ID)).scalar()
        return int(found or 0)


def move_cursor(last_seq: int) -> None:
    """Set the cursor (0: project the whole log again; a replay writes no row twice)."""
    with readside.begin(readside.DISTRICT) as conn:
        stmt = insert(CURSOR).values(id=CURSOR_ID, last_seq=last_seq)
        conn.execute(stmt.on_conflict_do_update(index_elements=[CURSOR.c.id], set_={"last_seq": last_seq}))


# ---------------------------------------------------------------- the projection


# The longest wait between two looks at a quiet audit log (an entry reaches the read model at most this late).
IDLE_MAX_SECONDS = 4.0


class AuditProjection:
    """Tails the audit log into the read model (a Worker of python -m services.projector)."""

    name = "projector-audit-worker"

    def __init__(self, log_: AuditLog, *, batch: int = 500, idle_seconds: float = 0.5, probe: int = 16) -> None:
        self.log = log_
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.retry_seconds = 0.5
        # How many seqs the next read asks for: a few while the log is quiet (a look-up of 500 ids every
        # half second cost the local FerretDB more than the rest of an idle stack), doubling while it is busy.
        self.probe = max(1, min(probe, batch))
        self.window = self.probe

    def _claim_cursor(self, conn: Connection) -> int:
        """The cursor, locked for this transaction (two projectors take turns, never interleave)."""
        conn.execute(insert(CURSOR).values(id=CURSOR_ID, last_seq=0).on_conflict_do_nothing())
        last = conn.execute(select(CURSOR.c.last_seq).where(CURSOR.c.id == CURSOR_ID).with_for_update()).scalar()
        return int(last or 0)

    def step(self) -> tuple[int, int]:
        """Project the next batch of entries in one transaction: (entries read, rows inserted)."""
        with readside.engine().begin() as raw:
            district = raw.execution_options(schema_translate_map={readside.PLACEHOLDER: readside.schema_for("")})
            last = self._claim_cursor(district)
            wanted = list(range(last + 1, last + 1 + self.window))
            found = {int(d["_id"]): d for d in self.log.entries.find({"_id": {"$in": wanted}})}
            entries: list[Entry] = []
            for seq in wanted:  # up to the first seq not written yet: the log has no gaps
                doc = found.get(seq)
                if doc is None:
                    break
                entries.append(entry_from_doc(doc))
            self.window = min(self.batch, self.window * 2) if len(entries) == len(wanted) else self.probe
            if not entries:
                return 0, 0
            self._check_links(last, entries)
            inserted = self._insert(raw, entries)
            head = entries[-1].seq
            district = raw.execution_options(schema_translate_map={readside.PLACEHOLDER: readside.schema_for("")})
            district.execute(CURSOR.update().where(CURSOR.c.id == CURSOR_ID).values(last_seq=head))
        now = datetime.now(UTC)
        for entry in entries:
            PROJECTION_LAG.labels(NAME).observe(max(0.0, (now - parse_time(entry.time)).total_seconds()))
        PROJECTED.labels(NAME, "projected").inc(len(entries))
        ROWS_WRITTEN.labels(NAME).inc(inserted)
        return len(entries), inserted

    _checked: tuple[int, str] = (0, GENESIS)  # (seq, hash) of the last entry checked; (0, GENESIS): the log's start

    def _check_links(self, last: int, entries: Sequence[Entry]) -> None:
        """The "audit chain broken" signal (hongling_audit_chain_broken), at no extra read: each entry the
        projection reads anyway must match its hash and link to the entry before it (known when this process
        checked that one, or it is the log's first). Entries changed after they were projected are found by the
        full check, `python -m services.common.audit verify` (docs/runbook.md, Monitoring and alerts)."""
        seq, prev = self._checked
        known = seq == last  # after a restart or a replay, the first entry's link is taken on trust
        for entry in entries:
            linked = (not known) or entry.prev_hash == prev
            if entry_hash(entry) != entry.hash or not linked:
                metrics.AUDIT_CHAIN_BROKEN.set(1)
                log.error("audit chain BROKEN at entry %d: hash or link does not verify", entry.seq)
            known, prev = True, entry.hash
        self._checked = (entries[-1].seq, entries[-1].hash)
        metrics.AUDIT_CHAIN_CHECKED_SEQ.set(entries[-1].seq)

    @staticmethod
    def _insert(conn: Connection, entries: Sequence[Entry]) -> int:
        per_tenant: dict[str, list[dict[str, Any]]] = {}
        known = set(tenant_slugs())
        for entry in entries:
            # An entry written before AuditLog.append placed unknown tenants at the district level names a
            # tenant with no schema; it is shown there too, rather than stopping the projection for good.
            tenant = entry.tenant if entry.tenant in known else readside.DISTRICT
            per_tenant.setdefault(tenant, []).append(row_of(entry))
        inserted = 0
        for tenant, rows in sorted(per_tenant.items()):
            bound = conn.execution_options(schema_translate_map={readside.PLACEHOLDER: readside.schema_for(tenant)})
            done = bound.execute(insert(ENTRIES).values(rows).on_conflict_do_nothing(index_elements=[ENTRIES.c.seq]))
            inserted += max(done.rowcount, 0)
        return inserted

    def catch_up(self) -> int:
        """Project until no entry is left (rebuilds, tests, benchmarks); returns rows inserted."""
        inserted = 0
        while True:
            read, written = self.step()
            inserted += written
            if read == 0:
                return inserted

    def run(self, stop: threading.Event) -> None:
        from services.common.idle import IdleBackoff

        log.info("projection %s tails the audit log", NAME)
        # Other processes write the log, so nothing announces an entry: while the log stays quiet the looks
        # back off from idle_seconds to IDLE_MAX_SECONDS (two looks a second were 0.4 % of a core at rest).
        idle = IdleBackoff(self.idle_seconds, max(self.idle_seconds, IDLE_MAX_SECONDS))
        while not stop.is_set():
            try:
                read, _ = self.step()
            except Exception as exc:  # the read side or the log is away: the same entries again
                FAILURES.labels(NAME).inc()
                log.warning("projection %s failed, retrying: %s", NAME, exc)
                stop.wait(self.retry_seconds)
                continue
            wait = idle.found(read > 0)
            if read == 0:  # caught up: wait a little for new entries (while they come, it reads on at once)
                stop.wait(wait)
