"""Dashboard rollups: counts kept beside the rows by the projection, so no dashboard reads issue or task rows.

- The rows get the facts the rollups count (worked out from each aggregate's own history, so every later
  state says the same): intake_issues `duplicate`, `whistled_at`, `done_at`; dispatch_tasks `done_at`,
  `overdue_at`; dispatch_whistles `first_report_at`, `first_report_in_time`.
- intake_issue_category_counts (community_id, category, status): issues by category and status.
- dispatch_task_counts (community_id, status, overdue): tasks by status and missed completion deadline.
- rollup_days (community_id, measure, day): events per local day (Asia/Shanghai) — issues received, calls
  blown, calls answered in time, tasks done, tasks overdue.
- rollup_durations (community_id, measure, day, bucket): span histograms with fixed buckets — receipt to
  whistle, whistle to first report-in, receipt to done.
Each per community and "*" (the tenant). What they count: services/common/rollups.py and the readmodel.py
of intake and dispatch. Rows already projected get their facts from their bodies here, and the counts are
worked out from them once (the readmodels' `backfill`, which reads every row of the schema once); from then
on the projection keeps them. An empty schema (a new one, or `python -m services.projector --rebuild`)
has nothing to fill.

Revision ID: 0003_dashboard_rollups
Revises: 0002_search_index_flat
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0003_dashboard_rollups"
down_revision = "0002_search_index_flat"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("intake_issues", sa.Column("duplicate", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.alter_column("intake_issues", "duplicate", server_default=None)
    op.add_column("intake_issues", sa.Column("whistled_at", TZ))
    op.add_column("intake_issues", sa.Column("done_at", TZ))
    op.add_column("dispatch_tasks", sa.Column("done_at", TZ))
    op.add_column("dispatch_tasks", sa.Column("overdue_at", TZ))
    op.add_column("dispatch_whistles", sa.Column("first_report_at", TZ))
    op.add_column("dispatch_whistles", sa.Column("first_report_in_time", sa.Boolean()))

    op.create_table(
        "intake_issue_category_counts",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("category", sa.Text(), primary_key=True),
        sa.Column("status", sa.Text(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "dispatch_task_counts",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("status", sa.Text(), primary_key=True),
        sa.Column("overdue", sa.Boolean(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    # A dashboard reads one community's measure over a window of days: a range of the primary key.
    op.create_table(
        "rollup_days",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("measure", sa.Text(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "rollup_durations",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("measure", sa.Text(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("bucket", sa.SmallInteger(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    _backfill()


def _backfill() -> None:
    """Facts and counts of the rows already there, by the projection's own code (see the docstring). It
    runs on this migration's connection and transaction, the tables mapped to the schema being migrated."""
    from services.common import readside
    from services.dispatch import readmodel as dispatch
    from services.intake import readmodel as intake

    schema = context.config.attributes["schema"]
    conn = op.get_bind().execution_options(schema_translate_map={readside.PLACEHOLDER: schema})
    intake.backfill(conn)
    dispatch.backfill(conn)


def downgrade() -> None:
    for table in ("rollup_durations", "rollup_days", "dispatch_task_counts", "intake_issue_category_counts"):
        op.drop_table(table)
    for table, column in (
        ("dispatch_whistles", "first_report_in_time"),
        ("dispatch_whistles", "first_report_at"),
        ("dispatch_tasks", "overdue_at"),
        ("dispatch_tasks", "done_at"),
        ("intake_issues", "done_at"),
        ("intake_issues", "whistled_at"),
        ("intake_issues", "duplicate"),
    ):
        op.drop_column(table, column)
