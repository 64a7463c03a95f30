"""Verification before filing (核实立案): the issue list's "verification overdue" filter
(intake_issues.verification_overdue: waiting for a filing decision past its deadline), kept by the projection
from each issue's state (services/intake/readmodel.py). Rows projected before it were filed directly (no
report waited for verification then): false, the column's default.

Revision ID: 0005_filing
Revises: 0004_grid_months
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_filing"
down_revision = "0004_grid_months"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "intake_issues",
        sa.Column("verification_overdue", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    # The subdistrict's list of overdue reports reads only the few flagged rows, newest first.
    op.create_index(
        "ix_intake_issues_verification_overdue",
        "intake_issues",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("verification_overdue"),
    )


def downgrade() -> None:
    op.drop_index("ix_intake_issues_verification_overdue", table_name="intake_issues")
    op.drop_column("intake_issues", "verification_overdue")
