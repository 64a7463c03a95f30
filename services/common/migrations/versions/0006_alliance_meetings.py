"""Joint meetings' read model (alliance_meetings, alliance_meeting_attendance: services/alliance/meetings/
readmodel.py) and intake's day rollup by category and grid (intake_topic_days: services/intake/readmodel.py),
which the meetings' hot topics (每月一题) read so that they never count issue rows.

Issue rows already projected are counted into intake_topic_days once here (reads every issue row of the schema
once); from then on intake's projection keeps the counts. An empty schema has nothing to count.

Revision ID: 0006_alliance_meetings
Revises: 0005_filing
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0006_alliance_meetings"
down_revision = "0005_filing"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alliance_meetings",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("ends_at", TZ),
        sa.Column("place", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("agenda_items", sa.Integer(), nullable=False),
        sa.Column("decided_items", sa.Integer(), nullable=False),
        sa.Column("invited", sa.Integer(), nullable=False),
        sa.Column("on_time", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("excused", sa.Integer(), nullable=False),
        sa.Column("absent", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ),
    )
    op.create_index("alliance_meetings_community_starts", "alliance_meetings", ["community_id", "starts_at", "id"])
    op.create_index("alliance_meetings_starts", "alliance_meetings", ["starts_at", "id"])
    op.create_table(
        "alliance_meeting_attendance",
        sa.Column("meeting_id", sa.Text(), primary_key=True),
        sa.Column("invitee", sa.Text(), primary_key=True),
        sa.Column("community_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("unit_id", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("alliance_attendance_unit", "alliance_meeting_attendance", ["unit_id", "starts_at", "meeting_id"])
    op.create_index(
        "alliance_attendance_person", "alliance_meeting_attendance", ["person_id", "starts_at", "meeting_id"]
    )
    # Hot topics read one community's days of a window: a range of the primary key.
    op.create_table(
        "intake_topic_days",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("kind", sa.Text(), primary_key=True),
        sa.Column("topic", sa.Text(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    from services.common import readside
    from services.intake import readmodel as intake

    schema = context.config.attributes["schema"]
    conn = op.get_bind().execution_options(schema_translate_map={readside.PLACEHOLDER: schema})
    intake.count_topic_days(conn)


def downgrade() -> None:
    op.drop_table("intake_topic_days")
    op.drop_table("alliance_meeting_attendance")
    op.drop_table("alliance_meetings")
