"""Issue search stays flat while issues come in, and the planner knows how common a word is.

A GIN index with fastupdate (PostgreSQL's default) queues new entries in a pending list that every
search reads until a vacuum merges it (up to gin_pending_list_limit, 4 MB): under a steady stream of new
issues each search paid for the queue (bench/read_scale.py saw 450 buffers read for 49 rows). Without it
an insert updates the index at once, a little dearer, off every reader's path (the projector writes).
A larger statistics target gives `grams @> …` estimates close to the truth for mid-frequency words, so
the planner walks the newest-first index only for common words and the GIN index for rare ones.

Revision ID: 0002_search_index_flat
Revises: 0001_read_models
Create Date: 2026-12-05
"""

from alembic import op

revision = "0002_search_index_flat"
down_revision = "0001_read_models"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER INDEX ix_intake_issues_grams SET (fastupdate = off)")
    op.execute("ALTER TABLE intake_issues ALTER COLUMN grams SET STATISTICS 1000")


def downgrade() -> None:
    op.execute("ALTER TABLE intake_issues ALTER COLUMN grams SET STATISTICS -1")
    op.execute("ALTER INDEX ix_intake_issues_grams RESET (fastupdate)")
