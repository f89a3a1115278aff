"""Shared fixtures: a real database on each backend (SQLite file, PostgreSQL), the app
in-process, and a real server. Every test that takes `db`, `api`, `make_api` or a live server
runs once per backend. Their databases number each table's ids from its own start
(tests/support/databases.py `offset_ids`): a test never sees campaign 1, record 1 and run 1
at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from farmhand.cli.demo import free_port, wait_until_up
from farmhand.client import FarmhandClient
from farmhand.server.app import create_app
from farmhand.server.db import Database
from farmhand.server.serving import connections
from farmhand.server.settings import Settings
from tests.support.databases import (
    BACKENDS,
    PostgresDatabase,
    migrated_postgres,
    migrated_sqlite,
    release_postgres,
    require_postgres,
)

# Fixtures for the HPC tests: `small_fs` (a tmpfs), `slurm` (the machine's Slurm); S3 ones.
pytest_plugins = ("tests.support.filesystems", "tests.support.slurm", "tests.support.s3")

ADMIN = "fh_test_admin_token"
FARMHAND = [sys.executable, "-m", "farmhand"]


#: Modules that must not share the machine with each other: real containers, the one Slurm
#: node, thousands of concurrent claims, hundreds of sockets. Under pytest-xdist they run one
#: after another on one worker while the other workers share the rest of the suite.
HEAVY = {
    "tests/runtime/runners/test_container_podman.py",
    "tests/e2e/integrations/test_containers.py",
    "tests/e2e/integrations/test_slurm.py",
    "tests/e2e/server/test_concurrent_claims.py",
    "tests/e2e/server/test_replicas.py",
    "tests/e2e/server/test_request_limits.py",
    "tests/e2e/server/test_slow_clients.py",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Tests go to workers one by one as they free up, except that the `HEAVY` modules form
    one scope that a single worker runs in turn. (Not `xdist_group` marks: `--dist loadgroup`
    renames node ids in a way pytest 9 ignores, so the marks never group anything.)"""
    from xdist.scheduler import LoadScopeScheduling

    class HeavyInTurn(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "heavy" if nodeid.split("::", 1)[0] in HEAVY else nodeid

    return HeavyInTurn(config, log)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that starts a real server process `e2e`: `pytest -m "not e2e"` is the
    fast loop."""
    for item in items:
        if "live_server_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI=true a skip is a failure, with the skip's reason: a run without PostgreSQL,
    podman, Slurm or Chromium must not pass quietly. Expected failures (xfail) stay as they are."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    if os.environ.get("CI", "").lower() != "true":
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"CI=true turns skips into failures; this test was skipped: {reason}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend this test runs on."""
    if request.param == "postgresql":
        require_postgres()
    return request.param


@pytest.fixture
def new_database_url(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Make fresh, empty databases on this test's backend; each call gives a new URL."""
    made: list[PostgresDatabase] = []

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'farmhand-{len(made)}-{os.urandom(3).hex()}.db'}"
        database = PostgresDatabase()
        made.append(database)
        return database.url

    yield make
    for database in made:
        database.drop()


@pytest.fixture
def new_offset_database_url(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Make fresh databases at head whose ids start apart (`offset_ids`), copied from a
    template migrated once per test process; each call gives a new URL. A server started on
    one migrates nothing and keeps the offsets."""
    made: list[PostgresDatabase] = []

    def make() -> str:
        if backend == "sqlite":
            return migrated_sqlite(tmp_path / f"farmhand-head-{os.urandom(3).hex()}.db")
        database = migrated_postgres()
        made.append(database)
        return database.url

    yield make
    for database in made:
        release_postgres(database)


@pytest.fixture
def db(new_offset_database_url: Callable[[], str]) -> Iterator[Database]:
    """A fresh database at head (the schema every server start ends with), ids apart."""
    database = Database(new_offset_database_url())
    yield database
    database.dispose()


@pytest.fixture
def make_api(
    tmp_path: Path, new_offset_database_url: Callable[[], str]
) -> Iterator[Callable[..., TestClient]]:
    """Build the app in-process on a fresh database (ids apart); `make_api(lease_ttl=…)`."""
    clients: list[TestClient] = []

    def make(**settings: object) -> TestClient:
        data_dir = tmp_path / f"data-{len(clients)}"
        if "database_url" not in settings:
            settings["database_url"] = new_offset_database_url()
        app = create_app(Settings(data_dir=data_dir, admin_token=ADMIN, **settings))
        client = TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"})
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., TestClient]) -> TestClient:
    """The app in-process, authenticated as admin."""
    return make_api()


@dataclass
class LiveServer:
    """A real uvicorn server on a free loopback port: a `farmhand server` process, or (with
    `threaded`) the same app served by uvicorn on a thread of the test process, which starts
    in milliseconds instead of the 1-2 s a process spends importing. A threaded server stops
    gracefully only; tests of kill -9, of the server's process (RSS, pid) or of its log file
    ask for a process."""

    url: str
    data_dir: Path
    admin_token: str
    env: dict[str, str]
    port: int
    process: subprocess.Popen | None = None
    log: Path | None = None
    threaded: bool = False
    _clients: list[FarmhandClient] = field(default_factory=list)
    _uvicorn: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        if self.threaded:
            self._start_thread()
            return
        assert self.log is not None
        for attempt in range(3):
            offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        *FARMHAND,
                        "server",
                        "--port",
                        str(self.port),
                        "--data-dir",
                        str(self.data_dir),
                        "--log-level",
                        "warning",
                    ],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                with FarmhandClient(self.url, self.admin_token) as client:
                    wait_until_up(client, self.process)
                # Another worker's server on the same port answers as well (same admin
                # token) while this one exits for the address in use: make sure it is ours.
                if _listens_on(self.process, self.port):
                    return
                self.process.kill()
                self.process.wait(timeout=30)
                raise RuntimeError(f"another server answers on port {self.port}")
            except RuntimeError as exc:
                with self.log.open("rb") as log:
                    log.seek(offset)
                    said = log.read().decode(errors="replace")
                # free_port() cannot reserve the port: on a busy machine another test may
                # take it before this server binds it. Then try another; else say why.
                if "address already in use" in said.lower() and attempt < 2:
                    self.port = free_port()
                    self.url = f"http://127.0.0.1:{self.port}"
                    continue
                raise RuntimeError(f"{exc}; its log says:\n{said[-3000:]}") from None

    def _start_thread(self) -> None:
        settings = Settings.from_env(self.env, data_dir=self.data_dir)
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
            **connections.uvicorn_options(settings),
        )
        server = self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, name=f"server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:  # set once the lifespan ran and the socket listens
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} did not start (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {self.port} did not start within 30 s")
            time.sleep(0.005)

    def client(self, token: str | None = None) -> FarmhandClient:
        """A client authenticated as admin (or with `token`)."""
        client = FarmhandClient(self.url, token or self.admin_token)
        self._clients.append(client)
        return client

    def client_env(self, token: str | None = None) -> dict[str, str]:
        """Environment for `farmhand` client and agent processes."""
        return {
            **self.env,
            "FARMHAND_SERVER": self.url,
            "FARMHAND_TOKEN": token or self.admin_token,
        }

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (a process with `sig`; a thread gracefully, as SIGTERM would)."""
        if self.threaded:
            assert sig == signal.SIGTERM, "signals other than SIGTERM need a server process"
            if self._uvicorn is not None and self._thread is not None:
                self._uvicorn.should_exit = True
                self._thread.join(timeout=30)
                assert not self._thread.is_alive(), f"the server on port {self.port} did not stop"
                self._uvicorn = self._thread = None
        elif self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        for client in self._clients:
            client.close()
        self._clients.clear()


def _listens_on(process: subprocess.Popen, port: int) -> bool:
    """Whether `process` holds the socket listening on 127.0.0.1:`port` (Linux's /proc:
    the listening socket's inode among the process's open files)."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    try:
        held = {os.readlink(fd) for fd in Path(f"/proc/{process.pid}/fd").iterdir()}
    except OSError:  # it exited
        return False
    return bool(inodes & held)


@pytest.fixture
def live_server_factory(
    tmp_path: Path, new_offset_database_url: Callable[[], str]
) -> Iterator[Callable[..., LiveServer]]:
    """Start real servers, each on a fresh database (ids apart) unless given a
    `database_url`; keyword arguments become FARMHAND_* settings. `process=True` runs it as
    a `farmhand server` process (kill -9, its pid, its log file); the default is a uvicorn
    server on a thread of the test process."""
    servers: list[LiveServer] = []

    def start(*, process: bool = False, **settings: object) -> LiveServer:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
        env["FARMHAND_ADMIN_TOKEN"] = ADMIN
        if "database_url" not in settings:
            settings["database_url"] = new_offset_database_url()
        env.update({f"FARMHAND_{k.upper()}": str(v) for k, v in settings.items()})
        server = LiveServer(
            url=f"http://127.0.0.1:{port}",
            data_dir=tmp_path / f"server-{port}",
            admin_token=ADMIN,
            env=env,
            port=port,
            log=tmp_path / f"server-{port}.log",
            threaded=not process,
        )
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """One real server with default settings, on a thread of the test process."""
    return live_server_factory()


@pytest.fixture
def live_server_process(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """One `farmhand server` process with default settings."""
    return live_server_factory(process=True)
