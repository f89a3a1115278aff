"""PostgreSQL: vacuum the queue tables early and leave room for in-page updates.

`record` rows are updated several times in a short life (ready → claimed → running → done),
each update leaving a dead tuple; with the default scale factor (20 %) a table of ten million
records would collect two million dead rows before autovacuum visits it, and the ready-queue
scan slows down walking them. Vacuum after ~1 % (and at least 1,000 rows) instead, let the
vacuum work faster, and keep 10 % of every page free so updates stay on the page. SQLite has
no such settings: a no-op there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TUNING = {
    "record": {
        "fillfactor": 90,
        "autovacuum_vacuum_scale_factor": 0.01,
        "autovacuum_vacuum_threshold": 1000,
        "autovacuum_analyze_scale_factor": 0.02,
        "autovacuum_vacuum_cost_limit": 2000,
    },
    "run": {
        "fillfactor": 90,
        "autovacuum_vacuum_scale_factor": 0.02,
        "autovacuum_analyze_scale_factor": 0.05,
    },
    "agent": {"autovacuum_vacuum_scale_factor": 0.05},
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, options in TUNING.items():
        settings = ", ".join(f"{name} = {value}" for name, value in options.items())
        op.execute(f"ALTER TABLE {table} SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, options in TUNING.items():
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(options)})")
