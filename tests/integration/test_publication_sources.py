"""The contract between the report upward and the read models it reads: every column publication declares in its
own read-only tables (services/publication/reports/sources.py) exists in the migrated schema of a tenant (migrated
when the stack's services start) with a compatible type, and the indexes its month's queries rely on are there
(migration 0012). A rename or a drop in dispatch's, evaluation's or the audit log's tables fails here, not in a
month's report."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql

from services.common import readside
from services.publication.reports import sources
from tests.conftest import System

T = "shanggao"


def _family(type_name: str) -> str:
    name = type_name.upper()
    for family, words in (
        ("time", ("TIMESTAMP", "DATETIME")),
        ("int", ("INT",)),
        ("bool", ("BOOL",)),
        ("bytes", ("BYTEA", "BINARY", "BLOB")),
        ("json", ("JSON",)),
        ("text", ("TEXT", "CHAR", "VARCHAR")),
    ):
        if any(w in name for w in words):
            return family
    return name


def test_every_column_the_report_reads_exists_with_its_type(system: System) -> None:
    schema = readside.schema_for(T)
    found = inspect(readside.engine())
    for table in sources.TABLES:
        columns = {c["name"]: c for c in found.get_columns(table.name, schema=schema)}
        for column in table.columns:
            assert column.name in columns, f"{table.name}.{column.name} is not in the migrated schema"
            have, want = (
                _family(str(columns[column.name]["type"])),
                _family(str(column.type.compile(dialect=postgresql.dialect()))),
            )
            assert have == want, f"{table.name}.{column.name}: {have}, publication reads it as {want}"


def test_the_indexes_the_months_queries_use_are_there(system: System) -> None:
    schema = readside.schema_for(T)
    found = inspect(readside.engine())
    names = {
        table: {i["name"] for i in found.get_indexes(table, schema=schema)}
        for table in ("audit_entries", "dispatch_tasks", "evaluation_review_rounds", "eval_m_targets")
    }
    assert {"audit_entries_at", "audit_entries_target"} <= names["audit_entries"]
    assert "ix_dispatch_tasks_overdue_at" in names["dispatch_tasks"]
    assert "evaluation_rounds_closed" in names["evaluation_review_rounds"]
    assert "eval_m_targets_blown" in names["eval_m_targets"]
