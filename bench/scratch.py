"""What the benchmarks stand on: scratch databases built by the migrations, a real `farmhand
server` process on one, and the SQL pieces their bulk fills write in each dialect.

Everything here cleans up after itself on the way out, exceptions and Ctrl-C included: a
PostgreSQL database is dropped, a server process stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from farmhand.cli.demo import free_port, wait_until_up
from farmhand.client import FarmhandClient
from farmhand.server import migrate
from farmhand.server.db import Database
from tests.support.databases import PostgresDatabase, postgres_problem

BACKENDS = ("sqlite", "postgresql")


def backends(requested: list[str] | None) -> list[str]:
    """The backends to measure (both unless `requested`), without PostgreSQL when it cannot
    be reached (saying why)."""
    chosen = list(requested or BACKENDS)
    if "postgresql" in chosen and postgres_problem():
        print(f"skipping PostgreSQL: {postgres_problem()}")
        chosen.remove("postgresql")
    return chosen


@contextmanager
def database(backend: str, directory: Path, name: str) -> Iterator[str]:
    """The URL of a new, empty database (a SQLite file `name`.db in `directory`, or a new
    PostgreSQL database), dropped again on the way out."""
    if backend == "sqlite":
        yield f"sqlite:///{directory}/{name}.db"
        return
    made = PostgresDatabase()
    try:
        yield made.url
    finally:
        made.drop()


def migrated(url: str) -> Database:
    """The database at `url` brought to head by the migrations, as a server builds it
    (`create_all` would skip what only the revisions do: 0002's autovacuum settings, 0007's
    index repair on SQLite)."""
    db = Database(url)
    migrate.upgrade(db.engine)
    return db


@contextmanager
def server(url: str, data_dir: Path, token: str, **settings: object) -> Iterator[tuple[str, int]]:
    """A real `farmhand server` process on `url` with admin `token` and FARMHAND_* `settings`;
    yields (base URL, pid) once it answers, and stops it on the way out."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    env["FARMHAND_ADMIN_TOKEN"] = token
    env.update({f"FARMHAND_{k.upper()}": str(v) for k, v in settings.items()})
    argv = [sys.executable, "-m", "farmhand", "server", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), "--database-url", url, "--log-level", "warning"]
    process = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with FarmhandClient(base, token) as client:
            wait_until_up(client, process)
        yield base, process.pid
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """Terminate a process, and kill it when it has not ended within ten seconds."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Sql:
    """The dialect's pieces of a bulk fill: `series` selects `i` from 1 to the bind `:n`
    (a recursive CTE on SQLite, generate_series on PostgreSQL); `now` is the UTC time as the
    tables store it."""

    sqlite: bool

    @property
    def series(self) -> str:
        """SELECT i FROM 1 .. :n."""
        if self.sqlite:
            return (
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
                "SELECT i FROM s"
            )
        return "SELECT generate_series(1, :n) AS i"

    @property
    def now(self) -> str:
        """The current UTC time."""
        return "datetime('now')" if self.sqlite else "(now() AT TIME ZONE 'utc')"

    def ago(self, seconds: str) -> str:
        """The UTC time `seconds` (an SQL expression) ago."""
        if self.sqlite:
            return f"datetime('now', '-' || ({seconds}) || ' seconds')"
        return f"({self.now} - make_interval(secs => {seconds}))"

    def later(self, seconds: int) -> str:
        """The UTC time `seconds` from now."""
        if self.sqlite:
            return f"datetime('now', '+{seconds} seconds')"
        return f"({self.now} + make_interval(secs => {seconds}))"

    def json_of(self, expression: str, kind: str = "JSON") -> str:
        """A text expression as a JSON column's value (PostgreSQL wants a cast)."""
        return expression if self.sqlite else f"CAST({expression} AS {kind})"
