"""Evaluation's verification read models (services/evaluation/verification/readmodel.py): review rounds and
on-site checks, filled by the projector from the evaluation state topic; and the index the verification queue
reads dispatch's done tasks of a community by (community_id, status, created_at DESC, id DESC), so the queue
reads only the page it shows however many tasks the community has had.

Revision ID: 0009_evaluation_verification
Revises: 0008_alliance_ledger
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_evaluation_verification"
down_revision = "0008_alliance_ledger"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evaluation_review_rounds",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("convenor", sa.Text(), nullable=False),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.Column("reviewers", sa.Integer(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("closed_at", TZ),
    )
    op.create_index("evaluation_rounds_community", "evaluation_review_rounds", ["community_id", "created_at", "id"])
    op.create_index(
        "evaluation_rounds_community_status",
        "evaluation_review_rounds",
        ["community_id", "status", "created_at", "id"],
    )
    op.create_index("evaluation_rounds_created", "evaluation_review_rounds", ["created_at", "id"])
    op.create_table(
        "evaluation_onsite_checks",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("inspector", sa.Text(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("place_flagged", sa.Boolean(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("photos", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("checked_at", TZ, nullable=False),
    )
    op.create_index("evaluation_checks_community", "evaluation_onsite_checks", ["community_id", "checked_at", "id"])
    op.create_index("evaluation_checks_task", "evaluation_onsite_checks", ["task_id", "checked_at", "id"])
    op.create_index("evaluation_checks_checked", "evaluation_onsite_checks", ["checked_at", "id"])
    op.execute(
        "CREATE INDEX ix_dispatch_tasks_community_id_status ON dispatch_tasks "
        "(community_id, status, created_at DESC, id DESC)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_dispatch_tasks_community_id_status")
    op.drop_table("evaluation_onsite_checks")
    op.drop_table("evaluation_review_rounds")
