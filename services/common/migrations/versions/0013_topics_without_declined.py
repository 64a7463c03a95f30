"""Hot topics (intake_topic_days, 每月一题) leave declined reports (不予立案) out: the projection no longer counts
a declined issue there (services/intake/readmodel.py contributions), so the rows already projected are counted
again once here (reads every issue row of the schema once). An empty schema has nothing to count.

Revision ID: 0013_topics_without_declined
Revises: 0012_publication
Create Date: 2026-12-06
"""

from alembic import context, op

revision = "0013_topics_without_declined"
down_revision = "0012_publication"
branch_labels = None
depends_on = None


def _recount() -> None:
    from services.common import readside
    from services.intake import readmodel as intake

    schema = context.config.attributes["schema"]
    conn = op.get_bind().execution_options(schema_translate_map={readside.PLACEHOLDER: schema})
    intake.count_topic_days(conn)


def upgrade() -> None:
    _recount()


def downgrade() -> None:
    pass  # no table changed; code of an older revision would need its own recount (0006's) to count declined again
