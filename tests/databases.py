"""Fresh test databases on each backend: a SQLite file, or a new PostgreSQL database.

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
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count()


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
