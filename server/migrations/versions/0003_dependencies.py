"""Calculation semantics: parents, datasets and tags, temporary run_args, what claims match.

- `record_parent`: the dependency graph (a record waits until every parent is done).
- `record.dataset`, `record.tags`; `campaign.based_on_id`, `campaign.finished_at`.
- `record.temporary_run_args` (from a retry) and `run.run_args` (what one attempt ran with).
- `record.runner`, `cores`, `gpus`, `memory_mb`, `walltime`: the effective run_args the claim
  matches against an agent's runners, free resources and time left, as plain columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_parent",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["record.id"]),
        sa.ForeignKeyConstraint(["parent_id"], ["record.id"]),
        sa.PrimaryKeyConstraint("record_id", "parent_id"),
    )
    op.create_index("ix_record_parent_parent", "record_parent", ["parent_id"])
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("based_on_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch.create_foreign_key("fk_campaign_based_on", "campaign", ["based_on_id"], ["id"])
    with op.batch_alter_table("record") as batch:
        batch.add_column(sa.Column("temporary_run_args", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("dataset", sa.String(), nullable=True))
        batch.add_column(
            sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(
            sa.Column("runner", sa.String(), nullable=False, server_default="subprocess")
        )
        batch.add_column(sa.Column("cores", sa.Float(), nullable=True))
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("memory_mb", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("walltime", sa.Float(), nullable=True))
        batch.create_index("ix_record_campaign_dataset", ["campaign_id", "dataset"])
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("run_args", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("run_args")
    with op.batch_alter_table("record") as batch:
        batch.drop_index("ix_record_campaign_dataset")
        for column in ("walltime", "memory_mb", "gpus", "cores", "runner", "tags", "dataset"):
            batch.drop_column(column)
        batch.drop_column("temporary_run_args")
    with op.batch_alter_table("campaign") as batch:
        batch.drop_constraint("fk_campaign_based_on", type_="foreignkey")
        batch.drop_column("finished_at")
        batch.drop_column("based_on_id")
    op.drop_index("ix_record_parent_parent", "record_parent")
    op.drop_table("record_parent")
