"""Snapshots (issue 5) and what agents offer (issue 6).

- `snapshot`: one row per verified blob in the blob store (sha256, size, first uploader).
- `record_input`: the files staged into a record's run directory, by snapshot.
- `checkpoint`: checkpoints runs saved; a record's next attempt restores the newest.
- `run.archive`: the sha256 of a run directory's tar.gz.
- `agent.runners`, `agent.resources`: what an agent offered at registration, so `farmhand
  status` can say why ready records do not move.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshot",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "record_input",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["record.id"]),
        sa.ForeignKeyConstraint(["sha256"], ["snapshot.sha256"]),
        sa.PrimaryKeyConstraint("record_id", "path"),
    )
    op.create_index("ix_record_input_sha256", "record_input", ["sha256"])
    op.create_table(
        "checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["record.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.ForeignKeyConstraint(["sha256"], ["snapshot.sha256"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_checkpoint_record", "checkpoint", ["record_id", "id"])
    op.create_index("ix_checkpoint_sha256", "checkpoint", ["sha256"])
    # Nullable, no default: adding such a column rewrites no rows on either backend.
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("archive", sa.String(64), nullable=True))
        batch.create_foreign_key("fk_run_archive", "snapshot", ["archive"], ["sha256"])
        batch.create_index("ix_run_archive", ["archive"])
    with op.batch_alter_table("agent") as batch:
        batch.add_column(sa.Column("runners", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent") as batch:
        batch.drop_column("resources")
        batch.drop_column("runners")
    with op.batch_alter_table("run") as batch:
        batch.drop_index("ix_run_archive")
        batch.drop_constraint("fk_run_archive", type_="foreignkey")
        batch.drop_column("archive")
    op.drop_index("ix_checkpoint_sha256", "checkpoint")
    op.drop_index("ix_checkpoint_record", "checkpoint")
    op.drop_table("checkpoint")
    op.drop_index("ix_record_input_sha256", "record_input")
    op.drop_table("record_input")
    op.drop_table("snapshot")
