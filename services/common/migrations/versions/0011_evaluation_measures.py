"""Evaluation's measures and boards (services/evaluation/measures/readmodel.py): the fact tables (whistle
targets, tasks' verdicts, ratings, duty facts), the counters derived from them, the processed event ids, the
helpers' kinds and names, and the frozen boards. New tables, filled by the consumer group evaluation-measures
from the services' event topics (kept for ever: a rebuild replays them from the start).

Revision ID: 0011_evaluation_measures
Revises: 0010_evaluation_ratings
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0011_evaluation_measures"
down_revision = "0010_evaluation_ratings"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
TEXTS = ARRAY(sa.Text())


def upgrade() -> None:
    op.create_table(
        "eval_m_targets",
        sa.Column("whistle_id", sa.Text(), primary_key=True),
        sa.Column("target", sa.Text(), primary_key=True),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("called", sa.Boolean(), nullable=False),
        sa.Column("reported", sa.Boolean(), nullable=False),
        sa.Column("in_time", sa.Boolean(), nullable=False),
        sa.Column("blown_at", TZ),
        sa.Column("reported_at", TZ),
        sa.Column("anchor_at", TZ),
        sa.Column("quarter", sa.Text(), nullable=False),
    )
    op.create_table(
        "eval_m_tasks",
        sa.Column("task_id", sa.Text(), primary_key=True),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("call_type", sa.Text(), nullable=False),
        sa.Column("crew", TEXTS, nullable=False),
        sa.Column("verdicts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("resident_failures", sa.Integer(), nullable=False),
        sa.Column("first_pass", sa.Boolean(), nullable=False),
        sa.Column("first_fail", sa.Boolean(), nullable=False),
        sa.Column("missed", sa.Boolean(), nullable=False),
        sa.Column("anchor_at", TZ),
        sa.Column("quarter", sa.Text(), nullable=False),
    )
    op.create_table(
        "eval_m_ratings",
        sa.Column("rating_id", sa.Text(), primary_key=True),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("subjects", TEXTS, nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("anchor_at", TZ),
        sa.Column("rated_quarter", sa.Text(), nullable=False),
        sa.Column("quarter", sa.Text(), nullable=False),
    )
    op.create_table(
        "eval_m_duties",
        sa.Column("fact_id", sa.Text(), primary_key=True),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("duty", sa.Text(), nullable=False),
        sa.Column("subjects", TEXTS, nullable=False),
        sa.Column("expected", sa.Boolean(), nullable=False),
        sa.Column("met", sa.Boolean(), nullable=False),
        sa.Column("excused", sa.Boolean(), nullable=False),
        sa.Column("anchor_at", TZ),
        sa.Column("quarter", sa.Text(), nullable=False),
    )
    # A quarter's rebuild reads its fact rows by quarter.
    for table in ("eval_m_targets", "eval_m_tasks", "eval_m_ratings", "eval_m_duties"):
        op.create_index(f"{table}_quarter", table, ["quarter"])
    op.create_table(
        "eval_m_counts",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("period", sa.Text(), primary_key=True),
        sa.Column("subject", sa.Text(), primary_key=True),
        sa.Column("counter", sa.Text(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    # The scopes with counters in a quarter (the boards' freeze) and a quarter's rebuild.
    op.create_index("eval_m_counts_period", "eval_m_counts", ["period", "scope"])
    op.create_table("eval_m_processed", sa.Column("event_id", sa.Text(), primary_key=True))
    op.create_table(
        "eval_m_subjects",
        sa.Column("subject", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("unit_kind", sa.Text(), nullable=False),
        sa.Column("roles", TEXTS, nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("name_zh", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "eval_m_board_sets",
        sa.Column("quarter", sa.Text(), primary_key=True),
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("corrects_version", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("formula", sa.Text(), nullable=False),
        sa.Column("frozen_at", TZ, nullable=False),
    )
    op.create_table(
        "eval_m_board_entries",
        sa.Column("quarter", sa.Text(), primary_key=True),
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("board", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("name_zh", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("workload", sa.BigInteger(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("parts", JSONB(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "eval_m_board_entries",
        "eval_m_board_sets",
        "eval_m_subjects",
        "eval_m_processed",
        "eval_m_counts",
        "eval_m_duties",
        "eval_m_ratings",
        "eval_m_tasks",
        "eval_m_targets",
    ):
        op.drop_table(table)
