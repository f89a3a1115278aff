"""`record.not_before`: a failed attempt's record waits out its `retry_delay` before the
next claim (NULL: claimable at once).

The claim reads it while it walks the ready index (`ix_record_ready`), so it needs no index
of its own. Added with ALTER TABLE (no batch rebuild), so SQLite keeps its DESC indexes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("record", sa.Column("not_before", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("record", "not_before")  # ALTER TABLE … DROP COLUMN (SQLite 3.35+)
