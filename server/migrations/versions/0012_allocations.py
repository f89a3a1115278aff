"""Elastic allocation (`farmhand autoscale`): the batch jobs autoscalers submitted
(`allocation`) and the lease each autoscaler holds for its name (`autoscaler`).

`allocation`: one row per batch job (unique by scheduler and job id), its state as the
autoscaler last saw it and what it was sized for; read by autoscaler and state. SQLite gets
AUTOINCREMENT, like every table with ids (revision 0008). `autoscaler`: the lease row (name,
holder, fencing token, expiry) and the autoscaler's last status document.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "allocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("autoscaler", sa.String(200), nullable=False),
        sa.Column("scheduler", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_for", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scheduler", "job_id", name="uq_allocation_job"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_allocation_autoscaler_state", "allocation", ["autoscaler", "state"])
    op.create_table(
        "autoscaler",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("token", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("autoscaler")
    op.drop_index("ix_allocation_autoscaler_state", table_name="allocation")
    op.drop_table("allocation")
