"""Campaigns that can be archived and deleted by whoever created them.

- `campaign.archived_at`: set by `POST /campaigns/{id}/archive`; archived campaigns are left
  out of the overview, `farmhand status` and campaign listings unless asked for.
- `campaign.created_by`: the id of the token that created it (NULL for campaigns created
  before this revision, and for bundle imports): that token or an admin may delete it.

Columns are added with ALTER TABLE (no batch rebuild), so SQLite keeps its DESC indexes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaign", sa.Column("archived_at", sa.DateTime(), nullable=True))
    op.add_column("campaign", sa.Column("created_by", sa.Integer(), nullable=True))


def downgrade() -> None:
    for column in ("created_by", "archived_at"):
        op.drop_column("campaign", column)  # ALTER TABLE … DROP COLUMN (SQLite 3.35+)
