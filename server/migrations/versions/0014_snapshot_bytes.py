"""`snapshot_bytes`: small snapshots' bytes in the database, beside their rows.

An output archive of a short calculation is a few hundred bytes to a few KiB. As a file in
the blob store it cost the server a staging file, an fsync, a rename, often a new shard
directory and that directory's fsync: about 1.5 ms of CPU and 3 ms of wall time each on the
benchmark machine, more than the rest of the record's life. Snapshots up to
`inline_snapshot_bytes` now go into this table in the transaction that writes their
`snapshot` row; larger ones stay in the blob store. Readers look here first.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshot_bytes",
        sa.Column("sha256", sa.String(64), sa.ForeignKey("snapshot.sha256"), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("snapshot_bytes")
