"""Repair the ready-queue index on SQLite: `ix_record_ready` is `(priority DESC, id)` again.

Revision 0001 built `ix_record_ready (priority DESC, id) WHERE state = 'ready'`, the claim's
order. On SQLite, 0003's batch mode rebuilt `record` and re-created its indexes from what it
reflected, and SQLAlchemy's SQLite reflection forgets DESC: the index came back as
`(priority, id)`, and every claim sorted the whole ready queue in a temporary b-tree
(issue 13). PostgreSQL alters tables in place and kept the index; this revision rebuilds the
index only where its definition is not the declared one, so it is a no-op there.

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

NAME = "ix_record_ready"
READY = "state = 'ready'"
#: How each dialect reads the index back: its own definition, normalised by `_declared`.
_DEFINITION = {
    "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name",
    "postgresql": "SELECT indexdef FROM pg_indexes WHERE indexname = :name",
}


def _declared(bind: sa.engine.Connection) -> bool:
    """True when the index exists in the claim's order, `(priority DESC, id)`."""
    found = bind.execute(sa.text(_DEFINITION[bind.dialect.name]), {"name": NAME}).scalar()
    return found is not None and "(priority DESC, id)" in " ".join(found.replace('"', "").split())


def upgrade() -> None:
    bind = op.get_bind()
    if _declared(bind):
        return
    op.execute(sa.text(f"DROP INDEX IF EXISTS {NAME}"))
    where = {"sqlite_where": sa.text(READY), "postgresql_where": sa.text(READY)}
    op.create_index(NAME, "record", [sa.text("priority DESC"), "id"], **where)


def downgrade() -> None:
    # Nothing to undo: the repaired index is the one revision 0001 declared.
    pass
