"""Publication (services/publication/): the publications' list and what its sources need indexed.
A placeholder until its areas fill it in.

Revision ID: 0012_publication
Revises: 0011_evaluation_measures
Create Date: 2026-12-06
"""

revision = "0012_publication"
down_revision = "0011_evaluation_measures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
