"""Issues received per grid per local month (intake_grid_months): the map's hot spots of the month, kept by the
projection beside the rows (services/intake/readmodel.py) so the map never counts issue rows.

Rows already projected are counted once here (reads every issue row of the schema once); from then on the
projection keeps the counts. An empty schema (a new one, or a rebuild) has nothing to count.

Revision ID: 0004_grid_months
Revises: 0003_dashboard_rollups
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0004_grid_months"
down_revision = "0003_dashboard_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A dashboard reads one community's grids of one month: a range of the primary key.
    op.create_table(
        "intake_grid_months",
        sa.Column("community_id", sa.Text(), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("grid_id", sa.Text(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    from services.common import readside
    from services.intake import readmodel as intake

    schema = context.config.attributes["schema"]
    conn = op.get_bind().execution_options(schema_translate_map={readside.PLACEHOLDER: schema})
    intake.count_grid_months(conn)


def downgrade() -> None:
    op.drop_table("intake_grid_months")
