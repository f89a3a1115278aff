"""`ix_record_campaign_ended`: a campaign's done and failed records in the order they ended.

The campaign page plots records done and failed over time and the run times of the newest
of them. Both read `(campaign_id, state, updated_at)` over the finished records alone: a
count per time bucket walks the index without reading a row or sorting, and "the newest
finished" is its tail. Partial, so the claim (ready -> claimed -> running) never writes it;
a report that ends a record adds one entry.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NAME = "ix_record_campaign_ended"
ENDED = "state IN ('done', 'failed')"  # as literal_in writes it, so the planners match it


def upgrade() -> None:
    op.create_index(
        NAME,
        "record",
        ["campaign_id", "state", "updated_at"],
        sqlite_where=sa.text(ENDED),
        postgresql_where=sa.text(ENDED),
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="record")
