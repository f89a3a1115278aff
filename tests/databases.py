"""Fresh test databases on each backend: a SQLite file, or a new PostgreSQL database.

Tables number their ids from far-apart starts (`offset_ids`), so no two tables share an id
in a test: a statement that matches one table's id against another's finds nothing instead
of matching by luck.

PostgreSQL comes from FARMHAND_TEST_POSTGRES_URL (an SQLAlchemy URL of a database the test user
may create databases from), else 127.0.0.1:5432 as user postgres. When it cannot be reached
the PostgreSQL half of the suite is skipped with the reason — except under CI=true, where an
unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import itertools
import os
from functools import cache

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from farmhand.server import migrate
from farmhand.server.db import Database

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count()

#: The first id each table hands out in a test database. The ranges do not overlap for any
#: test's amount of rows, and none holds the 999 that tests use for an id that exists nowhere.
ID_STARTS = {
    "campaign": 1_000,
    "token": 4_000,
    "agent": 7_000,
    "record": 20_000,
    "run": 300_000,
    "checkpoint": 4_000_000,
}


def offset_ids(engine: Engine) -> None:
    """Make the empty tables of a database at head number their ids from `ID_STARTS`:
    PostgreSQL restarts each table's sequence, SQLite sets its AUTOINCREMENT counter."""
    with engine.begin() as conn:
        for table, start in ID_STARTS.items():
            rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            assert rows == 0, f"offset_ids wants empty tables; {table} has {rows} rows"
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :start, false)"),
                    {"t": table, "start": start},
                )
            else:
                conn.execute(text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
                conn.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"),
                    {"t": table, "seq": start - 1},
                )


def migrate_with_offset_ids(url: str) -> None:
    """Bring the empty database at `url` to head and offset its ids (`offset_ids`): what a
    server started on it finds, and keeps, since migrating a database at head changes
    nothing."""
    database = Database(url)
    try:
        migrate.upgrade(database.engine)
        offset_ids(database.engine)
    finally:
        database.dispose()


def postgres_admin_url() -> str:
    """Where to create test databases."""
    return os.environ.get("FARMHAND_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


@cache
def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    engine = create_engine(postgres_admin_url(), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return (
            f"PostgreSQL at {make_url(postgres_admin_url()).render_as_string()} is "
            f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        )
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    """Skip (or, under CI=true, fail) when PostgreSQL is unavailable."""
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs PostgreSQL: {problem}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {problem}")


class PostgresDatabase:
    """A database created for one test and dropped after it."""

    def __init__(self) -> None:
        self.name = f"farmhand_test_{os.getpid()}_{next(_names)}"
        admin = make_url(postgres_admin_url())
        self.url = admin.set(database=self.name).render_as_string(hide_password=False)
        self._admin = create_engine(admin, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        """Drop the database, closing any connection still open to it."""
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()
