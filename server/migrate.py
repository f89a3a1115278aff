"""Bring a database to the schema this farmhand expects, with Alembic.

The server calls `upgrade()` at every start (and `farmhand server --migrate-only` calls it
alone). An empty database is built from the first revision up; an older one is upgraded
step by step; one that a newer farmhand already migrated past our head is refused, since
this code would misread it. Databases made before migrations existed (by `create_all`) are
recognised by their tables and stamped at the first revision, which is exactly that schema.

Several replicas may start at once on one PostgreSQL database: the upgrade runs under a
transaction-scoped advisory lock, so one migrates and the others find the work done.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from farmhand.server.errors import SchemaError

log = logging.getLogger("farmhand.server.migrate")

# The revision whose schema `create_all` produced before migrations existed.
BASELINE = "0001"
# Keys of our advisory locks on PostgreSQL: "farm" and "boot" in ASCII.
_MIGRATION_LOCK = 0x6661726D
_STARTUP_LOCK = 0x626F6F74


@dataclass(frozen=True)
class Migrated:
    """What `upgrade` did: the revision found and the revision left."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        """True when at least one migration ran."""
        return self.before != self.after


def config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for our migrations, bound to `connection` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("farmhand.server") / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None, "no migrations found"
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision (None for an empty or pre-migration database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, target: str = "head") -> Migrated:
    """Migrate the database to `target` (default: head) and say what changed."""
    scripts = ScriptDirectory.from_config(config())
    with engine.connect() as conn, _foreign_keys_deferred(conn), conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        before = MigrationContext.configure(conn).get_current_revision()
        if before is not None and _unknown(scripts, before):
            raise SchemaError(
                f"the database is at schema revision {before!r}, which this farmhand "
                f"(schema {scripts.get_current_head()!r}) does not know: a newer farmhand "
                "migrated it; run that version, or restore a backup taken before the upgrade"
            )
        cfg = config(conn)
        if before is None and _has_pre_migration_tables(conn):
            log.info("database predates migrations; marking it as revision %s", BASELINE)
            command.stamp(cfg, BASELINE)
            before = BASELINE
        command.upgrade(cfg, target)
        after = MigrationContext.configure(conn).get_current_revision()
        _check_foreign_keys(conn)
    assert after is not None
    if before != after:
        log.info("database schema migrated from %s to %s", before or "empty", after)
    return Migrated(before=before, after=after)


@contextmanager
def _foreign_keys_deferred(conn: Connection) -> Iterator[None]:
    """SQLite: switch foreign keys off while migrating.

    Batch mode rebuilds a table (create new, copy, drop old, rename); with foreign keys on,
    dropping a table other tables point at fails. The pragma only works outside a
    transaction, so it goes to the driver connection before SQLAlchemy begins one; the
    migrated data is checked with `foreign_key_check` before the commit instead.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise SchemaError(f"migration left rows pointing at nothing: {broken[:5]}")


@contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """Let one server start at a time on a PostgreSQL database (a no-op on SQLite).

    Held around everything a start does once (migrate, bootstrap the admin token, grant
    lease grace), so replicas started together take turns instead of racing on inserts.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _STARTUP_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _STARTUP_LOCK})
            conn.commit()


def _unknown(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is None
    except Exception:  # alembic raises its own ResolutionError/CommandError subclasses
        return True


def _has_pre_migration_tables(conn: Connection) -> bool:
    names = set(inspect(conn).get_table_names())
    return {"campaign", "record", "run"} <= names
