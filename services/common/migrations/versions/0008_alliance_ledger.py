"""The alliance ledger's read models (services/alliance/ledger/readmodel.py): pledges, time-bank entries and
balances, fund entries, postings, balances and monthly rollups. New tables, filled by the projector from the
alliance's state topic (nothing to backfill).

Revision ID: 0008_alliance_ledger
Revises: 0007_alliance_posts
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_alliance_ledger"
down_revision = "0007_alliance_posts"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alliance_pledges",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("unit_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("for_kind", sa.Text(), nullable=False),
        sa.Column("for_id", sa.Text(), nullable=False),
        sa.Column("pledged_at", TZ, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    # The open pledges of a community (or a unit), oldest first; other statuses read the same index backwards.
    op.create_index("alliance_pledges_community", "alliance_pledges", ["community_id", "status", "pledged_at", "id"])
    op.create_index("alliance_pledges_unit", "alliance_pledges", ["unit_id", "status", "pledged_at", "id"])
    op.create_index("alliance_pledges_for", "alliance_pledges", ["for_kind", "for_id"])
    op.create_table(
        "alliance_hours_entries",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Text(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("hours", sa.Numeric(14, 2), nullable=False),
        sa.Column("source_kind", sa.Text(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("alliance_hours_entries_person", "alliance_hours_entries", ["person_id", "at", "id"])
    op.create_index("alliance_hours_entries_community", "alliance_hours_entries", ["community_id", "at", "id"])
    op.create_table(
        "alliance_hours_balances",
        sa.Column("person_id", sa.Text(), primary_key=True),
        sa.Column("hours", sa.Numeric(14, 2), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "alliance_fund_entries",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("fund", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("alliance_fund_entries_community", "alliance_fund_entries", ["community_id", "at", "id"])
    op.create_index("alliance_fund_entries_fund", "alliance_fund_entries", ["community_id", "fund", "at", "id"])
    op.create_table(
        "alliance_fund_postings",
        sa.Column("entry_id", sa.Text(), primary_key=True),
        sa.Column("account", sa.Text(), primary_key=True),
        sa.Column("debit_fen", sa.BigInteger(), nullable=False),
        sa.Column("credit_fen", sa.BigInteger(), nullable=False),
    )
    op.create_index("alliance_fund_postings_account", "alliance_fund_postings", ["account"])
    op.create_table(
        "alliance_fund_balances",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("fund", sa.Text(), primary_key=True),
        sa.Column("balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("allocated_fen", sa.BigInteger(), nullable=False),
        sa.Column("spent_fen", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "alliance_fund_months",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("fund", sa.Text(), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("allocated_fen", sa.BigInteger(), nullable=False),
        sa.Column("spent_fen", sa.BigInteger(), nullable=False),
        sa.Column("closing_fen", sa.BigInteger(), nullable=False),
        sa.Column("closing_seq", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "alliance_fund_months",
        "alliance_fund_balances",
        "alliance_fund_postings",
        "alliance_fund_entries",
        "alliance_hours_balances",
        "alliance_hours_entries",
        "alliance_pledges",
    ):
        op.drop_table(name)
