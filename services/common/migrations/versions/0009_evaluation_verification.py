"""Evaluation's verification read models (services/evaluation/verification/readmodel.py).
A placeholder until its area fills it in.

Revision ID: 0009_evaluation_verification
Revises: 0008_alliance_ledger
Create Date: 2026-12-06
"""

revision = "0009_evaluation_verification"
down_revision = "0008_alliance_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
