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


def downgrade() -> None:
    op.drop_index("audit_entries_at", "audit_entries")
