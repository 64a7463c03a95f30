"""The SQL read side: one place for the read models' connections, tenancy and schema.

Lists, searches, pages and counts are served from tables in PostgreSQL (CQRS; cosmicpython's chapter
"Command-Query Responsibility Segregation"), kept by projections of the services' state topics
(services/common/projection.py, run by `python -m services.projector`). Reading one record by id stays
on the write side, so a caller always reads its own write.

Why SQLAlchemy Core over psycopg 3 (and not the ORM or raw psycopg): the reads are queries with optional
filters, keyset conditions and upserts, which Core composes as expressions (no string building, every
value a bound parameter); its pool is the one place for connections; Alembic, which runs the schema's
migrations, is built on it. The ORM's identity map and unit of work would buy nothing for rows that
only projections write.

Tenancy by construction: each tenant's tables live in its own schema (`hl_<tenant>`; district-level
records in `hl_district`). Tables are declared in the placeholder schema `tenant`, which every
connection from `begin`/`connect` maps to the schema of the call's tenant (SQLAlchemy's
schema_translate_map), so a query cannot reach another tenant's rows by forgetting a filter: it
would have to name another schema.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import bson
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Row,
    Table,
    and_,
    create_engine,
    literal,
    make_url,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import ColumnElement

from services.common import paging
from services.common.context import require_tenant
from services.common.settings import Settings, get_settings
from services.common.tenants import tenant_slugs

log = logging.getLogger(__name__)
D = TypeVar("D")

PLACEHOLDER = "tenant"
DISTRICT = ""  # the district level (records of no one tenant, e.g. the audit log's district entries)
# Every read model's tables, declared in the placeholder schema (see the module docstring).
METADATA = MetaData(schema=PLACEHOLDER)
MIGRATIONS = Path(__file__).with_name("migrations")

_engine: Engine | None = None
_engine_lock = threading.Lock()


def schema_for(tenant: str) -> str:
    """The schema that holds a tenant's read models ("" = the district level)."""
    if tenant == DISTRICT:
        return "hl_district"
    if not tenant.replace("_", "").isalnum() or not tenant.isascii():
        raise ValueError(f"not a tenant slug: {tenant!r}")
    return f"hl_{tenant}"


def all_schemas() -> list[tuple[str, str]]:
    """(tenant, schema) for every tenant and the district level."""
    return [(t, schema_for(t)) for t in (*tenant_slugs(), DISTRICT)]


def engine_url(settings: Settings) -> str:
    """The read side's URL, with the password from its file when the URL names none."""
    url = make_url(settings.read_db_url)
    if url.password is None and settings.read_db_password_file:
        path = Path(settings.read_db_password_file)
        if path.exists():
            url = url.set(password=path.read_text(encoding="utf-8").strip())
    return url.render_as_string(hide_password=False)


def engine(settings: Settings | None = None) -> Engine:
    """This process's engine (one pool per process, made on first use)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            settings = settings or get_settings()
            _engine = create_engine(
                engine_url(settings),
                pool_size=settings.read_db_pool_size,
                max_overflow=settings.read_db_pool_size,
                pool_pre_ping=True,
                pool_recycle=1800,
                connect_args={"connect_timeout": 5, "application_name": "hongling"},
            )
        return _engine


def _bound(conn: Connection, tenant: str | None) -> Connection:
    schema = schema_for(require_tenant() if tenant is None else tenant)
    return conn.execution_options(schema_translate_map={PLACEHOLDER: schema})


@contextmanager
def begin(tenant: str | None = None) -> Iterator[Connection]:
    """A transaction on the read side in the tenant's schema (default: the call's tenant); committed at
    the end of the block, rolled back if it raises."""
    with engine().begin() as conn:
        yield _bound(conn, tenant)


@contextmanager
def connect(tenant: str | None = None) -> Iterator[Connection]:
    """A connection for reads in the tenant's schema (default: the call's tenant)."""
    with engine().connect() as conn:
        yield _bound(conn, tenant)


def lock_aggregates(conn: Connection, ids: list[str]) -> None:
    """Serialize refreshes of the same aggregates (two projector processes) until the transaction ends; taken
    in one order, so that two refreshes cannot deadlock."""
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(x, 0)) FROM unnest(CAST(:ids AS text[])) AS x ORDER BY x"),
        {"ids": sorted(set(ids))},
    )


# ---------------------------------------------------------------- rows kept from aggregates

# A row's `body`: the aggregate as the write side held it (BSON), read back with aware UTC times.
BODY_CODEC: bson.CodecOptions[dict[str, Any]] = bson.CodecOptions(tz_aware=True, tzinfo=UTC)


def utc(at: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (the write side may hand back naive UTC)."""
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))


def body_of(raw: Mapping[str, Any]) -> bytes:
    """The aggregate for a row's `body`, without its outbox (events are the write side's business)."""
    return bson.encode({k: v for k, v in raw.items() if k != "outbox"})


def document_of(doc_cls: type[D], body: bytes) -> D:
    """The aggregate a row's `body` holds, as its mongoengine document (never saved from here)."""
    return doc_cls._from_son(bson.decode(body, codec_options=BODY_CODEC))  # type: ignore[attr-defined]


def newer_ids(conn: Connection, table: Table, versions: Mapping[str, int]) -> list[str]:
    """The ids (of id -> version) whose version is newer than their row's (or that have no row)."""
    held = dict(conn.execute(select(table.c.id, table.c.version).where(table.c.id.in_(list(versions)))).tuples().all())
    return [ident for ident, version in versions.items() if held.get(ident, 0) < version]


def upsert_newer(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert the rows, or replace those whose stored version is older (never a newer one: an event
    seen late or twice cannot undo a later state)."""
    stmt = insert(table).values(rows)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != "id"},
            where=table.c.version < stmt.excluded.version,
        )
    )


# ---------------------------------------------------------------- schema migrations (Alembic)


def newest_first(
    table: Table, at: str, where: list[ColumnElement[bool]], fingerprint: str, page_token: str, size: int
) -> tuple[list[Row[Any]], str]:
    """One keyset page of `table`'s rows matching `where`, newest first by (at, id), and the next page's token
    (bound to `fingerprint`, the filters) or "": reads at most size + 1 rows through an index on (…, at, id)."""
    c = table.c
    if page_token:
        after_at, after_id = paging.parse_page_token(page_token, fingerprint)
        where = [*where, tuple_(c[at], c.id) < tuple_(literal(after_at), literal(after_id))]
    query = select(table).where(and_(True, *where)).order_by(c[at].desc(), c.id.desc()).limit(size + 1)
    with connect() as conn:
        found = conn.execute(query).all()
    page = found[:size]
    token = paging.page_token(getattr(page[-1], at), page[-1].id, fingerprint) if len(found) > size else ""
    return list(page), token


def migrate(revision: str = "head", *, quiet: bool = False) -> None:
    """Bring every tenant's schema (and the district's) to `revision` with Alembic; idempotent."""
    from alembic import command
    from alembic.config import Config

    schemas = all_schemas()
    with engine().begin() as conn:
        for _, schema in schemas:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    for n, (tenant, schema) in enumerate(schemas, 1):
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["schema"] = schema
        with engine().begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        if not quiet:
            print(f"[readside] {n}/{len(schemas)} schema {schema} ({tenant or 'district'}) at {revision}", flush=True)


def reset() -> None:
    """Drop every read model (rebuild them by replaying the state topics: python -m services.projector --rebuild)."""
    with engine().begin() as conn:
        for _, schema in all_schemas():
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.readside", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("migrate", help="create or upgrade every tenant's read-model schema (idempotent)")
    up.add_argument("--revision", default="head")
    sub.add_parser("reset", help="drop every read model (then migrate and rebuild them from the state topics)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.command == "migrate":
            migrate(args.revision)
        else:
            reset()
            print(
                "[readside] every read-model schema dropped: run migrate, then python -m services.projector --rebuild"
            )
    except Exception as exc:  # a clear line, not a stack trace: the URL without its password
        safe = make_url(get_settings().read_db_url).render_as_string(hide_password=True)
        print(
            f"error: the read side at {safe} refused {args.command}: {exc.__class__.__name__}: {exc}", file=sys.stderr
        )
        print("       is PostgreSQL running? `make infra` starts it (deploy/local/stack.sh).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
