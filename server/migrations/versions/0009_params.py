"""Record params, a campaign's param names, and the "what ended since" generation stamps.

- `record.params`: a flat mapping of names to scalars (JSONB on PostgreSQL, so filters read
  one key and its type), `'{}'` for the records already there.
- `campaign.params`: the sorted names its records' params use (the results table's columns,
  and the names a filter may use).
- `record.end_seq` / `campaign.end_seq`: a reader of "what ended since generation G"
  stamps the records that ended unstamped (partial index `ix_record_unstamped`) with the
  campaign's next generation, and reads by `(campaign_id, end_seq, id)` (a partial index of
  the stamped records): each poll reads only what changed. Records that ended before this
  revision are stamped by the first reader.

- `ix_record_campaign_id (campaign_id, id)`: a campaign's records in id order, for listings,
  results tables and bulk actions that walk it page by page.

Columns are added with ALTER TABLE (no batch rebuild), so SQLite keeps its DESC indexes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ENDED = "end_seq IS NULL AND state IN ('cancelled', 'done', 'failed', 'orphaned')"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column(
        "record", sa.Column("params", _json(), nullable=False, server_default=sa.text("'{}'"))
    )
    op.add_column("record", sa.Column("end_seq", sa.BigInteger(), nullable=True))
    op.add_column(
        "campaign", sa.Column("params", _json(), nullable=False, server_default=sa.text("'[]'"))
    )
    op.add_column(
        "campaign",
        sa.Column("end_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_index("ix_record_campaign_id", "record", ["campaign_id", "id"])
    stamped = sa.text("end_seq IS NOT NULL")
    op.create_index(
        "ix_record_campaign_end",
        "record",
        ["campaign_id", "end_seq", "id"],
        sqlite_where=stamped,
        postgresql_where=stamped,
    )
    op.create_index(
        "ix_record_unstamped",
        "record",
        ["campaign_id"],
        sqlite_where=sa.text(ENDED),
        postgresql_where=sa.text(ENDED),
    )


def downgrade() -> None:
    op.drop_index("ix_record_campaign_id", table_name="record")
    op.drop_index("ix_record_unstamped", table_name="record")
    op.drop_index("ix_record_campaign_end", table_name="record")
    for table, column in (
        ("campaign", "end_seq"),
        ("campaign", "params"),
        ("record", "end_seq"),
        ("record", "params"),
    ):
        op.drop_column(table, column)  # ALTER TABLE … DROP COLUMN (SQLite 3.35+): no rebuild
