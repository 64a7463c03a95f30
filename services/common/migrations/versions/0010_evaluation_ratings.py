"""Evaluation's ratings read models (services/evaluation/ratings/readmodel.py): residents' ratings and
rejections of verified results, and the quarterly unit ratings. New tables, filled by the projector from the
evaluation state topic (nothing to backfill).

Revision ID: 0010_evaluation_ratings
Revises: 0009_evaluation_verification
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_evaluation_ratings"
down_revision = "0009_evaluation_verification"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evaluation_resident_ratings",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("issue_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("call_type", sa.Text(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index(
        "evaluation_resident_ratings_community", "evaluation_resident_ratings", ["community_id", "at", "id"]
    )
    op.create_index("evaluation_resident_ratings_at", "evaluation_resident_ratings", ["at", "id"])
    op.create_table(
        "evaluation_unit_ratings",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Text(), nullable=False),
        sa.Column("unit_name_zh", sa.Text(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("quarter", sa.Text(), nullable=False),
        sa.Column("rater_kind", sa.Text(), nullable=False),
        sa.Column("rater", sa.Text(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("rated_at", TZ, nullable=False),
    )
    op.create_index("evaluation_unit_ratings_community", "evaluation_unit_ratings", ["community_id", "rated_at", "id"])
    op.create_index("evaluation_unit_ratings_unit", "evaluation_unit_ratings", ["unit_id", "quarter", "rated_at", "id"])
    op.create_index("evaluation_unit_ratings_at", "evaluation_unit_ratings", ["rated_at", "id"])


def downgrade() -> None:
    op.drop_table("evaluation_unit_ratings")
    op.drop_table("evaluation_resident_ratings")
