"""Publication (services/publication/): the publications' list and what its sources need indexed.
The audit entries' (at, seq) index: the head of the chain at a period's end (services/publication/anchor.py).

Revision ID: 0012_publication
Revises: 0011_evaluation_measures
Create Date: 2026-12-06
"""

from alembic import op

revision = "0012_publication"
down_revision = "0011_evaluation_measures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("audit_entries_at", "audit_entries", ["at", "seq"])
    # publication-kinds begin: what the report upward reads (services/publication/reports/builder.py)
    # - a request's filing by its id (the ledger's approvals and rejections of a month name requests of any month)
    op.create_index("audit_entries_target", "audit_entries", ["target", "seq"])
    # - the month's overdue tasks (few rows have overdue_at), review rounds closed and whistle targets called
    op.execute(
        "CREATE INDEX ix_dispatch_tasks_overdue_at ON dispatch_tasks (overdue_at, id) WHERE overdue_at IS NOT NULL"
    )
    op.create_index("evaluation_rounds_closed", "evaluation_review_rounds", ["closed_at", "id"])
    op.create_index("eval_m_targets_blown", "eval_m_targets", ["blown_at"])
    # publication-kinds end


def downgrade() -> None:
    # publication-kinds begin
    op.drop_index("eval_m_targets_blown", "eval_m_targets")
    op.drop_index("evaluation_rounds_closed", "evaluation_review_rounds")
    op.execute("DROP INDEX IF EXISTS ix_dispatch_tasks_overdue_at")
    op.drop_index("audit_entries_target", "audit_entries")
    # publication-kinds end
    op.drop_index("audit_entries_at", "audit_entries")
