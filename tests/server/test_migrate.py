"""Migrations: empty and older databases reach head with nothing lost, on both backends."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from farmhand.server import migrate, tables
from farmhand.server.db import Database
from farmhand.server.errors import SchemaError
from tests.server.helpers import API, agent, claim

OLD_TOKEN = "fh_token_from_an_older_farmhand"
T0 = datetime(2026, 1, 2, 3, 4, 5)
# Tests of what only PostgreSQL does run on it alone (parametrised, not skipped on SQLite).
POSTGRESQL_ONLY = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def seed_0001(conn: Connection) -> None:
    """Rows as revision 0001's schema holds them: a campaign with a finished, a running
    and a ready record, their runs, a result document, an agent and a submitter token."""
    conn.execute(
        text(
            "INSERT INTO campaign (id, name, version, software, defaults, created_at)"
            " VALUES (1, 'old', 2, 'v1.0', :defaults, :t)"
        ),
        {"defaults": '{"walltime": 60}', "t": T0},
    )
    conn.execute(
        text(
            "INSERT INTO agent (id, name, host, pid, slots, labels, state, registered_at,"
            " last_heartbeat) VALUES (7, 'a', 'node1', 42, 4, '{}', 'active', :t, :t)"
        ),
        {"t": T0},
    )
    for rid, key, state, attempts, run_id in [
        (1, "done-1", "done", 1, 1),
        (2, "running-2", "running", 1, 2),
        (3, "ready-3", "ready", 0, None),
    ]:
        conn.execute(
            text(
                "INSERT INTO record (id, campaign_id, key, command, priority, run_args, state,"
                " attempts, max_attempts, agent_id, run_id, lease_expires_at, created_at,"
                " updated_at) VALUES (:id, 1, :key, :cmd, 5, :args, :state, :attempts, 3,"
                " :agent, :run, :expires, :t, :t)"
            ),
            {
                "id": rid,
                "key": key,
                "cmd": f"echo {key}",
                "args": '{"env": {"X": "1"}}',
                "state": state,
                "attempts": attempts,
                "agent": 7 if state == "running" else None,
                "run": run_id,
                "expires": datetime(2099, 1, 1) if state == "running" else None,
                "t": T0,
            },
        )
    for run_id, rid, state, token in [(1, 1, "done", "tok-1"), (2, 2, "running", "tok-2")]:
        conn.execute(
            text(
                "INSERT INTO run (id, record_id, agent_id, token, attempt, state, claimed_at,"
                " exit_code, stdout_tail) VALUES (:id, :rid, 7, :token, 1, :state, :t, :code,"
                " 'hello')"
            ),
            {
                "id": run_id,
                "rid": rid,
                "token": token,
                "state": state,
                "code": 0 if state == "done" else None,
                "t": T0,
            },
        )
    conn.execute(
        text("INSERT INTO record_result (record_id, run_id, document) VALUES (1, 1, :doc)"),
        {"doc": '{"energy": -3.5}'},
    )
    conn.execute(
        text(
            "INSERT INTO token (id, name, role, digest, created_at, revoked)"
            " VALUES (50, 'old', 'submitter', :digest, :t, :no)"
        ),
        {"digest": hashlib.sha256(OLD_TOKEN.encode()).hexdigest(), "t": T0, "no": False},
    )
    _advance_sequences(conn)


def _advance_sequences(conn: Connection) -> None:
    # Explicit ids do not move PostgreSQL's sequences; a real older server's rows would have.
    if conn.dialect.name != "postgresql":
        return
    for table in ("campaign", "agent", "record", "run", "token"):
        conn.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table}")
        )


# The rows each revision can hold. Adding a revision? Add a seed for the one before it, so
# the upgrade from it is tested with data in the database.
SEEDS: dict[str, Callable[[Connection], None]] = {
    "0001": seed_0001,
    "0002": seed_0001,
    "0003": seed_0001,
    "0004": seed_0001,
    "0005": seed_0001,
    "0006": seed_0001,
    "0007": seed_0001,
    "0008": seed_0001,
    "0009": seed_0001,
    "0010": seed_0001,
    "0011": seed_0001,
    "0012": seed_0001,
    "0013": seed_0001,
}


def revisions() -> list[str]:
    """Every revision, oldest first."""
    scripts = ScriptDirectory.from_config(migrate.config())
    return [s.revision for s in reversed(list(scripts.walk_revisions()))]


def check_seeded_data(api: TestClient) -> None:
    """What seed_0001 wrote reads back through today's API, unchanged."""
    campaigns = api.get(f"{API}/campaigns").json()
    old = next(c for c in campaigns if c["name"] == "old")
    assert (old["version"], old["software"], old["defaults"]) == (2, "v1.0", {"walltime": 60})
    assert {k: v for k, v in old["counts"].items() if v} == {"done": 1, "running": 1, "ready": 1}
    done = api.get(f"{API}/records/1").json()
    assert done["key"] == "done-1" and done["result"] == {"energy": -3.5}
    assert done["derived_run_args"] == {"walltime": 60, "env": {"X": "1"}}
    assert done["inputs"] == {}  # 0005's record_input table
    assert done["params"] == {}  # 0009's column
    assert old["archived_at"] is None and old["created_by"] is None  # 0010's columns
    assert done["not_before"] is None  # 0011's column
    assert api.get(f"{API}/allocations").json()["allocations"] == []  # 0012's tables
    assert [(r["state"], r["exit_code"], r["stdout_tail"], r["archive"]) for r in done["runs"]] == [
        ("done", 0, "hello", None)
    ]
    running = api.get(f"{API}/records/2").json()
    assert running["state"] == "running" and running["runs"][0]["state"] == "running"
    (old,) = [a for a in api.get(f"{API}/agents").json() if a["id"] == 7]
    assert (old["name"], old["slots"], old["status"]) == ("a", 4, None)  # 0004's column
    as_submitter = api.get(f"{API}/records/3", headers={"Authorization": f"Bearer {OLD_TOKEN}"})
    assert as_submitter.status_code == 200 and as_submitter.json()["state"] == "ready"
    # New rows get fresh ids after the old ones; a claim numbers its run after runs 1 and 2.
    made = api.post(f"{API}/campaigns", json={"name": "new"})
    assert made.status_code == 201 and made.json()["id"] == 2
    (lease,) = claim(api, agent(api, "new"))
    assert (lease["record_id"], lease["run_id"]) == (3, 3)


def test_revisions_form_one_chain_with_a_seed_for_each_but_head() -> None:
    chain = revisions()
    assert chain[0] == migrate.BASELINE and chain[-1] == migrate.head()
    assert set(chain[:-1]) <= set(SEEDS), "seed every revision older than head"


def test_head_matches_the_tables(db: Database) -> None:
    """Forgetting a migration for a change in tables.py fails here."""
    with db.engine.connect() as conn:
        include = tables.include_object_for(conn.dialect.name)  # honours ddl_if
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include}
        )
        assert compare_metadata(context, tables.metadata) == []


def test_empty_database_reaches_head_and_a_second_run_changes_nothing(
    new_database_url: Callable[[], str],
) -> None:
    database = Database(new_database_url())
    try:
        first = migrate.upgrade(database.engine)
        assert (first.before, first.after, first.changed) == (None, migrate.head(), True)
        again = migrate.upgrade(database.engine)
        assert (again.before, again.changed) == (migrate.head(), False)
        assert {"campaign", "record", "run"} <= set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


@pytest.mark.parametrize("start", revisions())
def test_database_at_each_revision_upgrades_with_its_data(
    start: str,
    new_database_url: Callable[[], str],
    make_api: Callable[..., TestClient],
) -> None:
    url = new_database_url()
    database = Database(url)
    try:
        migrate.upgrade(database.engine, start)
        with database.engine.begin() as conn:
            SEEDS.get(start, seed_0001)(conn)
    finally:
        database.dispose()
    check_seeded_data(make_api(database_url=url))  # the app migrates at start


@POSTGRESQL_ONLY  # storage parameters are PostgreSQL's
def test_queue_tables_get_their_autovacuum_settings_on_postgresql(db: Database) -> None:
    with db.engine.connect() as conn:
        options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'record'"))
        assert {"fillfactor=90", "autovacuum_vacuum_scale_factor=0.01"} <= set(options.scalar())


def test_database_made_before_migrations_is_stamped_then_upgraded(
    new_database_url: Callable[[], str], make_api: Callable[..., TestClient]
) -> None:
    url = new_database_url()
    database = Database(url)
    try:
        migrate.upgrade(database.engine, migrate.BASELINE)
        with database.engine.begin() as conn:
            seed_0001(conn)
            conn.execute(text("DROP TABLE alembic_version"))  # as create_all left it
        assert migrate.current(database.engine) is None
    finally:
        database.dispose()
    check_seeded_data(make_api(database_url=url))
    database = Database(url)
    try:
        assert migrate.current(database.engine) == migrate.head()
    finally:
        database.dispose()


def test_database_from_a_newer_farmhand_is_refused_untouched(
    new_database_url: Callable[[], str], tmp_path: Path
) -> None:
    url = new_database_url()
    database = Database(url)
    try:
        migrate.upgrade(database.engine)
        with database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
        with pytest.raises(SchemaError, match="revision 'f00d', which this farmhand"):
            migrate.upgrade(database.engine)
        assert migrate.current(database.engine) == "f00d"
    finally:
        database.dispose()
    done = _migrate_only(url, tmp_path)
    assert done.returncode == 1
    assert "cannot migrate the database" in done.stderr and "f00d" in done.stderr


def test_migrate_only_command(new_database_url: Callable[[], str], tmp_path: Path) -> None:
    url = new_database_url()
    first = _migrate_only(url, tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"migrated from empty to {migrate.head()}" in first.stdout
    second = _migrate_only(url, tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"up to date (revision {migrate.head()})" in second.stdout


@POSTGRESQL_ONLY  # one SQLite file is served by one server process
def test_replicas_starting_together_migrate_once(
    new_database_url: Callable[[], str], tmp_path: Path
) -> None:
    """On PostgreSQL an advisory lock makes concurrent starts take turns."""
    url = new_database_url()
    starts = [_migrate_only(url, tmp_path / f"replica-{i}", wait=False) for i in range(4)]
    outputs = [p.communicate(timeout=120) for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0, 0], outputs
    said = sorted("migrated from empty" in out for out, _ in outputs)
    assert said == [False, False, False, True], outputs


@POSTGRESQL_ONLY  # one SQLite file is served by one server process
def test_servers_started_together_on_a_new_database_all_come_up(
    new_database_url: Callable[[], str], live_server_factory: Callable[..., Any]
) -> None:
    """Start-up work (migrate, admin token, lease grace) takes turns across replicas."""
    url = new_database_url()
    with ThreadPoolExecutor(3) as pool:
        servers = list(
            pool.map(lambda _: live_server_factory(process=True, database_url=url), range(3))
        )
    for server in servers:
        assert server.client().health().status == "ok"
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            admins = conn.execute(text("SELECT count(*) FROM token WHERE role = 'admin'"))
            assert admins.scalar() == 1
    finally:
        database.dispose()


def _migrate_only(url: str, tmp_path: Path, *, wait: bool = True) -> Any:
    """Run `farmhand server --migrate-only` (finished, or still running when not `wait`)."""
    argv = [sys.executable, "-m", "farmhand", "server", "--migrate-only"]
    argv += ["--database-url", url, "--data-dir", str(tmp_path / "data")]
    if wait:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def index_definitions(engine: Engine) -> list[str]:
    """Every index as the database itself defines it, sorted: SQLite's `CREATE INDEX` text
    (for the indexes it makes for constraints, their columns with sort order) and
    PostgreSQL's `pg_indexes.indexdef`; quoting and spacing normalised, Alembic's table left
    out. Alembic's compare_metadata reads reflected indexes, which forget DESC on SQLite."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()")
            ).scalars()
            found = [" ".join(definition.split()) for definition in rows]
        else:
            found = []
            for name, table, sql in conn.execute(
                text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'")
            ):
                if sql is None:  # an automatic index: named by its position in CREATE TABLE
                    info = conn.exec_driver_sql(f"PRAGMA index_xinfo('{name}')").all()
                    keys = [f"{r[2]} {'DESC' if r[3] else 'ASC'}" for r in info if r[5]]
                    sql = f"automatic unique index ON {table} ({', '.join(keys)})"
                found.append(" ".join(sql.split()))
    normal = (re.sub(r"\(\s+|\s+\)|\s*,\s*", _tight, d.replace('"', "")) for d in found)
    return sorted(d for d in normal if "alembic_version" not in d)


def _tight(match: re.Match[str]) -> str:
    return match.group().strip() + (" " if "," in match.group() else "")


def test_migrations_build_the_indexes_tables_py_declares(
    new_database_url: Callable[[], str],
) -> None:
    """Issue 13: 0003 rebuilt `record` on SQLite and left ix_record_ready without its DESC,
    so every claim sorted the ready queue; compare_metadata did not notice."""
    migrated, declared = Database(new_database_url()), Database(new_database_url())
    try:
        migrate.upgrade(migrated.engine)
        tables.metadata.create_all(declared.engine)
        assert index_definitions(migrated.engine) == index_definitions(declared.engine)
        ready = [d for d in index_definitions(migrated.engine) if " ix_record_ready ON " in d]
        assert len(ready) == 1 and "(priority DESC, id) WHERE" in ready[0], ready
    finally:
        migrated.dispose()
        declared.dispose()
