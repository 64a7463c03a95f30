"""Evaluation's ratings read models (services/evaluation/ratings/readmodel.py).
A placeholder until its area fills it in.

Revision ID: 0010_evaluation_ratings
Revises: 0009_evaluation_verification
Create Date: 2026-12-06
"""

revision = "0010_evaluation_ratings"
down_revision = "0009_evaluation_verification"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
