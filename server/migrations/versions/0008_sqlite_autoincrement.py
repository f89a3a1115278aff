"""SQLite: ids are never reused, as PostgreSQL's sequences already promise (AUTOINCREMENT).

A plain `INTEGER PRIMARY KEY` on SQLite hands out max(id) + 1, so an empty table starts at 1
and every table's first row gets the same id; with `AUTOINCREMENT` the next id comes from
`sqlite_sequence`, which only grows. That is what PostgreSQL's sequences do, and it lets a
test database start each table's ids at its own offset (tests/support/databases.py `offset_ids`),
so a query that joins on the wrong table's id fails there instead of matching by luck.

Each table is rebuilt once (SQLite cannot add AUTOINCREMENT in place); copying the rows with
their ids sets each table's counter to its highest id. The cost afterwards is one update of
`sqlite_sequence` per inserted row (about a microsecond). PostgreSQL gets nothing here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("campaign", "token", "agent", "record", "run", "checkpoint")


def _rebuild(autoincrement: bool) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    conn = op.get_bind()
    for name in TABLES:
        # Batch mode rebuilds indexes from reflection, which forgets DESC: put each back
        # exactly as it was written.
        indexes = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL",
            (name,),
        ).all()
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
        for index, sql in indexes:
            conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index}"')
            conn.exec_driver_sql(sql)


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
