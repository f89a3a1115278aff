"""Key-prefix search on PostgreSQL: an index on (campaign_id, key text_pattern_ops).

The campaign page finds records whose key starts with what the user typed, with
`key LIKE 'prefix%'`. PostgreSQL can read a b-tree for that only under the C collation or
through the `text_pattern_ops` operator class; without it the search reads the whole
campaign (300-400 ms at a million records). SQLite compares keys as bytes and serves the
prefix as a range of its unique (campaign_id, key) index, so it gets nothing here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NAME = "ix_record_campaign_key_pattern"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.create_index(
        NAME, "record", ["campaign_id", "key"], postgresql_ops={"key": "text_pattern_ops"}
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.drop_index(NAME, table_name="record")
