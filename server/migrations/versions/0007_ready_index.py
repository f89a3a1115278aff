"""The ready queue's indexes in claim order: repair `ix_record_ready`, add one per campaign.

- `ix_record_ready (priority DESC, id) WHERE state = 'ready'` is the claim's order. On
  SQLite, 0003's batch mode rebuilt `record` and re-created its indexes from reflection,
  which has no sort order: the index came back as `(priority, id)` and every claim sorted
  the whole ready queue in a temporary b-tree (issue 13). It is rebuilt where its definition
  lost DESC; PostgreSQL alters tables in place and kept it.
- `ix_record_ready_campaign (campaign_id, priority DESC, id) WHERE state = 'ready'`: the
  same order within one campaign, so a claim for one campaign (`farmhand agent --campaign`)
  reads its first records instead of sorting all of the campaign's ready ones.

A later revision that batch-alters `record` loses both DESCs again on SQLite and must
re-create the two indexes after it (test_migrate's index comparison fails until it does).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

READY = "state = 'ready'"
IN_ORDER = [sa.text("priority DESC"), "id"]
#: Each dialect's own definition of an index, as it reports it.
_DEFINITION = {
    "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name",
    "postgresql": "SELECT indexdef FROM pg_indexes WHERE indexname = :name",
}


def _create(name: str, columns: list) -> None:
    where = {"sqlite_where": sa.text(READY), "postgresql_where": sa.text(READY)}
    op.create_index(name, "record", columns, **where)


def _in_claim_order(name: str) -> bool:
    """True when index `name` exists and ends in the claim's order, `priority DESC, id)`."""
    bind = op.get_bind()
    found = bind.execute(sa.text(_DEFINITION[bind.dialect.name]), {"name": name}).scalar()
    return found is not None and "priority DESC, id)" in " ".join(found.replace('"', "").split())


def upgrade() -> None:
    if not _in_claim_order("ix_record_ready"):
        op.execute(sa.text("DROP INDEX IF EXISTS ix_record_ready"))
        _create("ix_record_ready", IN_ORDER)
    _create("ix_record_ready_campaign", ["campaign_id", *IN_ORDER])


def downgrade() -> None:
    # ix_record_ready stays repaired: that is the index revision 0001 declared.
    op.drop_index("ix_record_ready_campaign", table_name="record")
