"""Standing posts and co-building activities (services/alliance/posts/readmodel.py,
services/alliance/activities/readmodel.py): posts, their shifts and claims; activities and their participants.
New tables, filled by the projector from the alliance state topic.

Revision ID: 0007_alliance_posts
Revises: 0006_alliance_meetings
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_alliance_posts"
down_revision = "0006_alliance_meetings"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alliance_posts",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("place_kind", sa.Text(), nullable=False),
        sa.Column("place_id", sa.Text(), nullable=False),
        sa.Column("place_name", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("alliance_posts_community", "alliance_posts", ["community_id", "created_at", "id"])
    op.create_table(
        "alliance_post_shifts",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("post_id", sa.Text(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("ends_at", TZ, nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
    )
    op.create_index("alliance_post_shifts_post", "alliance_post_shifts", ["post_id", "starts_at"])
    op.create_index("alliance_post_shifts_community", "alliance_post_shifts", ["community_id", "starts_at"])
    op.create_table(
        "alliance_post_claims",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        *(
            sa.Column(name, sa.Text(), nullable=False)
            for name in ("post_id", "post_name", "shift_id", "community_id", "unit_id", "person_id", "status")
        ),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("checked_in_by", sa.Text(), nullable=False),
        sa.Column("shift_starts_at", TZ, nullable=False),
        sa.Column("shift_ends_at", TZ, nullable=False),
        sa.Column("claimed_at", TZ, nullable=False),
        sa.Column("checked_in_at", TZ),
        sa.Column("released_at", TZ),
        sa.Column("missed_at", TZ),
    )
    op.create_index("alliance_post_claims_shift", "alliance_post_claims", ["shift_id"])
    op.create_index("alliance_post_claims_person", "alliance_post_claims", ["person_id", "shift_starts_at"])
    op.create_index("alliance_post_claims_unit", "alliance_post_claims", ["unit_id", "shift_starts_at"])
    op.create_index("alliance_post_claims_community", "alliance_post_claims", ["community_id", "shift_starts_at"])
    op.create_table(
        "alliance_activities",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("place_name", sa.Text(), nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("ends_at", TZ, nullable=False),
        sa.Column("signup_deadline", TZ, nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("attended", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("alliance_activities_community", "alliance_activities", ["community_id", "starts_at", "id"])
    op.create_index("alliance_activities_starts", "alliance_activities", ["starts_at", "id"])
    op.create_table(
        "alliance_activity_participants",
        sa.Column("activity_id", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("unit_id", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("attended", sa.Boolean(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("signed_up_at", TZ, nullable=False),
        sa.Column("attended_at", TZ),
        sa.Column("starts_at", TZ, nullable=False),
    )
    op.create_index(
        "alliance_activity_participants_person", "alliance_activity_participants", ["person_id", "starts_at"]
    )
    op.create_index("alliance_activity_participants_unit", "alliance_activity_participants", ["unit_id", "starts_at"])


def downgrade() -> None:
    for table in (
        "alliance_activity_participants",
        "alliance_activities",
        "alliance_post_claims",
        "alliance_post_shifts",
        "alliance_posts",
    ):
        op.drop_table(table)
