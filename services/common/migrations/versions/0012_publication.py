"""Publication (services/publication/): the publications' list and what its sources need indexed.
The audit entries' (at, seq) index: the head of the chain at a period's end (services/publication/anchor.py).

Revision ID: 0012_publication
Revises: 0011_evaluation_measures
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012_publication"
down_revision = "0011_evaluation_measures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("audit_entries_at", "audit_entries", ["at", "seq"])
    # what the report upward reads (services/publication/reports/builder.py)
    # - a request's filing by its id (the ledger's approvals and rejections of a month name requests of any month)
    op.create_index("audit_entries_target", "audit_entries", ["target", "seq"])
    # - the month's overdue tasks (few rows have overdue_at), review rounds closed and whistle targets called
    op.execute(
        "CREATE INDEX ix_dispatch_tasks_overdue_at ON dispatch_tasks (overdue_at, id) WHERE overdue_at IS NOT NULL"
    )
    op.create_index("evaluation_rounds_closed", "evaluation_review_rounds", ["closed_at", "id"])
    op.create_index("eval_m_targets_blown", "eval_m_targets", ["blown_at"])
    # the versions' list (services/publication/lifecycle/readmodel.py) and the
    # monthly sources' month look-ups (services/publication/monthly/sources.py)
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "publication_versions",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("corrects_version", sa.Integer(), nullable=False),
        sa.Column("changes", JSONB(), nullable=False),
        sa.Column("content_sha256", sa.Text(), nullable=False),
        sa.Column("audit_anchor", JSONB()),
        sa.Column("title_zh", sa.Text(), nullable=False),
        sa.Column("title_en", sa.Text(), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("reviewed_at", tz),
        sa.Column("reviewed_by", sa.Text(), nullable=False),
        sa.Column("review_note", sa.Text(), nullable=False),
        sa.Column("released_at", tz),
        sa.Column("released_by", sa.Text(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
    )
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("publication_versions_newest", ("period_start", "number", "id")),
        ("publication_versions_kind", ("kind", "period_start", "number", "id")),
        ("publication_versions_scope", ("scope", "period_start", "number", "id")),
        ("publication_versions_status", ("status", "period_start", "number", "id")),
        ("publication_versions_released", ("status", "released_at", "id")),
        ("publication_versions_scope_released", ("scope", "status", "released_at", "id")),
        ("publication_versions_series", ("kind", "scope", "period", "number")),
    )
    for name, cols in indexes:
        op.create_index(name, "publication_versions", list(cols))
    # One community's month of the monthly board's sources (services/publication/monthly/sources.py).
    for name, table, on in MONTHLY_INDEXES:
        op.create_index(name, table, list(on))


# the monthly sources' indexes
MONTHLY_INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("publication_src_issues_created", "intake_issues", ("community_id", "created_at")),
    ("publication_src_issues_done", "intake_issues", ("community_id", "done_at")),
    ("publication_src_tasks_created", "dispatch_tasks", ("community_id", "created_at")),
    ("publication_src_tasks_done", "dispatch_tasks", ("community_id", "done_at")),
    ("publication_src_whistles_blown", "dispatch_whistles", ("community_id", "blown_at")),
)


def downgrade() -> None:
    op.drop_index("eval_m_targets_blown", "eval_m_targets")
    op.drop_index("evaluation_rounds_closed", "evaluation_review_rounds")
    op.execute("DROP INDEX IF EXISTS ix_dispatch_tasks_overdue_at")
    op.drop_index("audit_entries_target", "audit_entries")
    for name, table, _ in MONTHLY_INDEXES:
        op.drop_index(name, table)
    op.drop_table("publication_versions")
    op.drop_index("audit_entries_at", "audit_entries")
