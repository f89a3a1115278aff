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

import atexit
import itertools
import os
import sqlite3
import tempfile
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

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
    "allocation": 9_000_000,
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
    """A database created for one test (empty, or a copy of `template`) and dropped after it."""

    def __init__(self, template: str | None = None) -> None:
        self.name = f"farmhand_test_{os.getpid()}_{next(_names)}"
        admin = make_url(postgres_admin_url())
        self.url = admin.set(database=self.name).render_as_string(hide_password=False)
        self._admin = create_engine(admin, isolation_level="AUTOCOMMIT")
        copy = f' TEMPLATE "{template}"' if template else ""
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"{copy}'))

    def drop(self) -> None:
        """Drop the database, closing any connection still open to it."""
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


# --- databases at head: copied from a template, reused after a reset -----------------------
# Migrating costs 0.15-0.2 s a database. SQLite copies a template migrated once per test
# process (milliseconds). PostgreSQL creates a database from such a template once, and after
# each test empties it and restarts its ids (60 ms) for the next test of the process:
# CREATE and DROP DATABASE each wait for a checkpoint, which several workers at once turn
# into seconds.


@cache
def _sqlite_template() -> Path:
    path = Path(tempfile.mkdtemp(prefix="farmhand-template-")) / "head.db"
    migrate_with_offset_ids(f"sqlite:///{path}")
    return path


def migrated_sqlite(path: Path) -> str:
    """A SQLite database at `path`, at head with its ids apart; its URL."""
    with sqlite3.connect(_sqlite_template()) as source, sqlite3.connect(path) as target:
        source.backup(target)
    path.chmod(0o600)  # as a server under its default umask would have made it
    return f"sqlite:///{path}"


@cache
def _postgres_template() -> PostgresDatabase:
    template = PostgresDatabase()
    migrate_with_offset_ids(template.url)  # disposes its engine: no one stays connected
    atexit.register(template.drop)
    with create_engine(template.url, poolclass=NullPool).connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    _HEAD.append(head)
    return template


_HEAD: list[str] = []
_REUSABLE: list[PostgresDatabase] = []
atexit.register(lambda: [database.drop() for database in _REUSABLE])


def migrated_postgres() -> PostgresDatabase:
    """A PostgreSQL database at head with its ids apart, empty; hand it back with
    `release_postgres` after use."""
    template = _postgres_template()
    return _REUSABLE.pop() if _REUSABLE else PostgresDatabase(template=template.name)


def release_postgres(database: PostgresDatabase) -> None:
    """Empty `database` and restart its ids for the next test; drop it instead when a test
    left it at another schema version (or it cannot be emptied)."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            if head != _HEAD[0]:
                raise RuntimeError(f"left at schema {head}")
            tables = conn.execute(
                text(
                    "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables"
                    " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            ).scalar_one()
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        offset_ids(engine)
    except Exception:
        engine.dispose()
        database.drop()
        return
    engine.dispose()
    _REUSABLE.append(database)
