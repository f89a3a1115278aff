"""The two kinds of write transaction routes open: an ORM session and a Core connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlmodel import SQLModel

from farmhand.server.db import Database, connection_of
from farmhand.server.tables import Campaign

CAMPAIGN = Campaign.__table__


def campaigns(db: Database) -> int:
    with db.read() as s:
        return s.execute(select(func.count()).select_from(CAMPAIGN)).scalar_one()


def test_write_core_commits_at_the_end_and_rolls_back_on_error(db: Database) -> None:
    with db.write_core() as conn:
        conn.execute(insert(CAMPAIGN).values(name="kept", version=1, defaults={}))
    assert campaigns(db) == 1
    with pytest.raises(RuntimeError), db.write_core() as conn:
        conn.execute(insert(CAMPAIGN).values(name="dropped", version=1, defaults={}))
        raise RuntimeError("the route failed")
    assert campaigns(db) == 1
    with db.write() as s:  # data functions take either kind
        assert connection_of(s) is s.connection()
    with db.write_core() as conn:
        assert connection_of(conn) is conn


def test_write_core_takes_the_sqlite_write_lock_up_front(tmp_path: Path) -> None:
    """SQLite only: PostgreSQL locks rows, not the database."""
    db = Database(f"sqlite:///{tmp_path / 'farmhand.db'}")
    SQLModel.metadata.create_all(db.engine)
    other = sqlite3.connect(tmp_path / "farmhand.db", timeout=0, isolation_level=None)
    try:
        # BEGIN IMMEDIATE: the lock is held before the first statement, so another writer
        # is refused at once instead of meeting "database is locked" half-way.
        with db.write_core(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
        db.dispose()
