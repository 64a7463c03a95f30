"""What the report upward reads of other services' SQL read models: publication's OWN read-only declarations of
the few columns it reads (a separate MetaData, schema placeholder "tenant" as services/common/readside.py maps
it), so that no module of dispatch, evaluation or the gateway is imported and a change of their tables is
caught by the contract test (tests/integration/test_publication_report.py checks that every column declared
here exists in the migrated schema with a compatible type). Nothing here is ever written.

- dispatch_tasks (migrations 0001, 0003): overdue tasks; `body` is the task's BSON document (its category).
- evaluation_onsite_checks (0009) and evaluation_resident_ratings (0010): the month's failed verifications.
- evaluation_review_rounds (0009): review rounds closed in the month with failed tasks.
- eval_m_targets (0011): each whistle target's called / reported facts (who did not answer).
- audit_entries (0001, index (at, seq) of 0012): the burden ledger's entries.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, LargeBinary, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from services.common.readside import PLACEHOLDER

METADATA = MetaData(schema=PLACEHOLDER)
TZ = DateTime(timezone=True)

TASKS = Table(
    "dispatch_tasks",
    METADATA,
    Column("id", Text, primary_key=True),
    Column("community_id", Text),
    Column("finished", Boolean),
    Column("complete_by", TZ),
    Column("done_at", TZ),
    Column("overdue_at", TZ),
    Column("body", LargeBinary),
)

CHECKS = Table(
    "evaluation_onsite_checks",
    METADATA,
    Column("id", Text, primary_key=True),
    Column("community_id", Text),
    Column("task_id", Text),
    Column("passed", Boolean),
    Column("checked_at", TZ),
)

ACTS = Table(
    "evaluation_resident_ratings",
    METADATA,
    Column("id", Text, primary_key=True),
    Column("kind", Text),
    Column("task_id", Text),
    Column("community_id", Text),
    Column("at", TZ),
)

ROUNDS = Table(
    "evaluation_review_rounds",
    METADATA,
    Column("id", Text, primary_key=True),
    Column("community_id", Text),
    Column("status", Text),
    Column("failed", Integer),
    Column("closed_at", TZ),
)

TARGETS = Table(
    "eval_m_targets",
    METADATA,
    Column("whistle_id", Text, primary_key=True),
    Column("target", Text, primary_key=True),
    Column("community_id", Text),
    Column("called", Boolean),
    Column("reported", Boolean),
    Column("in_time", Boolean),
    Column("blown_at", TZ),
)

AUDIT = Table(
    "audit_entries",
    METADATA,
    Column("seq", BigInteger, primary_key=True),
    Column("at", TZ),
    Column("action", Text),
    Column("outcome", Text),
    Column("target", Text),
    Column("grant_id", Text),
    Column("detail", JSONB),
)

TABLES = (TASKS, CHECKS, ACTS, ROUNDS, TARGETS, AUDIT)
