"""agent.status: what each agent reported with its last heartbeat (paused, disk use, outbox).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: existing agents simply have not reported a status yet, and adding
    # such a column rewrites no rows on either backend.
    with op.batch_alter_table("agent") as batch:
        batch.add_column(sa.Column("status", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent") as batch:
        batch.drop_column("status")
