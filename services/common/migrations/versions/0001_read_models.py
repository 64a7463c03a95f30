"""The first read models: intake's issues (lists, search, counts), dispatch's tasks (lists, overdue
queues) and calls (the whistle board), and the audit log's pages.

Each table is a projection of one aggregate kept by services/common/projection.py: filter columns with
their indexes, and `body`, the aggregate as the write side held it at `version` (BSON), from which the
lists answer. Keyset pages run newest first on (time DESC, id DESC) indexes, one per filter the API has.

Revision ID: 0001_read_models
Revises:
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001_read_models"
down_revision = None
branch_labels = None
depends_on = None

TEXT_ARRAY = pg.ARRAY(sa.Text())


def _newest_first(table: str, *columns: str) -> None:
    """An index for one filter's newest-first keyset pages: (columns..., time DESC, id DESC)."""
    time = {"intake_issues": "created_at", "dispatch_tasks": "created_at", "dispatch_whistles": "blown_at"}[table]
    name = f"ix_{table}_{'_'.join(columns) or 'newest'}"
    cols = ", ".join([*columns, f"{time} DESC", "id DESC"])
    op.execute(f"CREATE INDEX {name} ON {table} ({cols})")


def upgrade() -> None:
    op.create_table(
        "intake_issues",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("urgency", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("grid_id", sa.Text(), nullable=False),
        # Text search: the title and description, lower-cased, and their characters and character pairs (a
        # GIN index finds the rows holding every pair of the query; `search` then confirms the substring).
        sa.Column("search", sa.Text(), nullable=False),
        sa.Column("grams", TEXT_ARRAY, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    _newest_first("intake_issues")
    for cols in (("status",), ("status", "category"), ("category",), ("urgency",), ("channel",)):
        _newest_first("intake_issues", *cols)
    _newest_first("intake_issues", "community_id")
    _newest_first("intake_issues", "grid_id")
    op.execute("CREATE INDEX ix_intake_issues_grams ON intake_issues USING gin (grams)")
    # Counts kept beside the rows (a count never reads the rows): per community and status, and "*" for the tenant.
    op.create_table(
        "intake_issue_counts",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("status", sa.Text(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )

    op.create_table(
        "dispatch_tasks",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("grid_id", sa.Text(), nullable=False),
        sa.Column("call_type", sa.Text(), nullable=False),
        sa.Column("report_in_by", sa.DateTime(timezone=True)),
        sa.Column("complete_by", sa.DateTime(timezone=True)),
        sa.Column("crew_ids", TEXT_ARRAY, nullable=False),
        sa.Column("whistle_ids", TEXT_ARRAY, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    _newest_first("dispatch_tasks")
    for col in ("status", "community_id", "grid_id", "call_type"):
        _newest_first("dispatch_tasks", col)
    op.execute("CREATE INDEX ix_dispatch_tasks_crew ON dispatch_tasks USING gin (crew_ids)")
    op.execute("CREATE INDEX ix_dispatch_tasks_whistles ON dispatch_tasks USING gin (whistle_ids)")
    # The overdue queues: unfinished work by its deadline, most overdue first.
    op.execute("CREATE INDEX ix_dispatch_tasks_late_done ON dispatch_tasks (complete_by, id) WHERE NOT finished")
    op.execute(
        "CREATE INDEX ix_dispatch_tasks_late_done_community ON dispatch_tasks (community_id, complete_by, id) "
        "WHERE NOT finished"
    )
    op.execute("CREATE INDEX ix_dispatch_tasks_late_report ON dispatch_tasks (report_in_by, id) WHERE status = 'open'")
    op.execute(
        "CREATE INDEX ix_dispatch_tasks_late_report_community ON dispatch_tasks (community_id, report_in_by, id) "
        "WHERE status = 'open'"
    )

    op.create_table(
        "dispatch_whistles",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("blown_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("call_type", sa.Text(), nullable=False),
        sa.Column("target_ids", TEXT_ARRAY, nullable=False),
        sa.Column("task_ids", TEXT_ARRAY, nullable=False),
        # Open while a task of the call is unfinished (or none of its tasks is known yet).
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    _newest_first("dispatch_whistles")
    for cols in (("community_id",), ("call_type",), ("open",), ("open", "community_id")):
        _newest_first("dispatch_whistles", *cols)
    op.execute("CREATE INDEX ix_dispatch_whistles_targets ON dispatch_whistles USING gin (target_ids)")
    op.execute("CREATE INDEX ix_dispatch_whistles_tasks ON dispatch_whistles USING gin (task_ids)")

    # The audit log's entries about this tenant (the district schema: entries of no tenant), whole.
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("grant_id", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("detail", pg.JSONB(), nullable=False),
        sa.Column("time", sa.Text(), nullable=False),  # as chained (RFC 3339), so an entry reads back byte-exact
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
    )
    op.execute("CREATE INDEX ix_audit_entries_action ON audit_entries (action, seq DESC)")
    op.execute("CREATE INDEX ix_audit_entries_actor ON audit_entries (actor, seq DESC)")
    op.execute("CREATE INDEX ix_audit_entries_grant ON audit_entries (grant_id, seq DESC) WHERE grant_id <> ''")
    op.execute("CREATE INDEX ix_audit_entries_at ON audit_entries (at DESC, seq DESC)")
    # How far the audit projection has read the log (one row, in the district schema).
    op.create_table(
        "audit_cursor",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "audit_cursor",
        "audit_entries",
        "dispatch_whistles",
        "dispatch_tasks",
        "intake_issue_counts",
        "intake_issues",
    ):
        op.drop_table(table)
