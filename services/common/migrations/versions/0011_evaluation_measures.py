"""Evaluation's measures and boards (services/evaluation/measures/).
A placeholder until its area fills it in.

Revision ID: 0011_evaluation_measures
Revises: 0010_evaluation_ratings
Create Date: 2026-12-06
"""

revision = "0011_evaluation_measures"
down_revision = "0010_evaluation_ratings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
