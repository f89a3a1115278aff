"""`farmhand server`'s connection options: flags and FARMHAND_* variables reach uvicorn, and
the open-files limit is raised to hold the connection cap. (Their effect on a real server:
tests/e2e/server/test_slow_clients.py.)"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from farmhand.server import cli
from farmhand.server.serving import connections
from farmhand.server.settings import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `farmhand server` would hand to uvicorn (nothing is served, logging untouched)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **options: seen.update(options))
    monkeypatch.setattr(cli.logging.config, "dictConfig", lambda config: None)
    monkeypatch.setattr(connections, "raise_open_files_limit", lambda n: seen.update(files=n))
    for name in ("HEADER_TIMEOUT", "BODY_TIMEOUT", "MAX_CONNECTIONS"):
        monkeypatch.delenv(f"FARMHAND_{name}", raising=False)
    return seen


def test_defaults_reach_uvicorn(started: dict[str, Any], tmp_path: Path) -> None:
    assert cli.main(["--data-dir", str(tmp_path)]) == 0
    protocol = started["http"]
    assert (protocol.header_timeout, protocol.body_timeout) == (20.0, 60.0)
    assert issubclass(protocol, connections.ReadTimeouts)
    assert started["limit_concurrency"] == started["files"] == 8192


def test_flags_win_over_the_environment(
    started: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FARMHAND_HEADER_TIMEOUT", "9")
    monkeypatch.setenv("FARMHAND_MAX_CONNECTIONS", "5000")
    argv = ["--data-dir", str(tmp_path), "--body-timeout", "7", "--max-connections", "100"]
    assert cli.main(argv) == 0
    protocol = started["http"]
    assert (protocol.header_timeout, protocol.body_timeout) == (9.0, 7.0)
    assert started["limit_concurrency"] == 100


def test_bad_values_are_refused() -> None:
    for bad in ({"header_timeout": 0}, {"body_timeout": -1}, {"max_connections": 0}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]


RAISE = """
import resource
import subprocess
import sys
from farmhand.server.serving import connections
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # a common service default
print(connections.raise_open_files_limit(4096), connections.raise_open_files_limit(10))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_open_files_limit_is_raised_to_hold_the_cap() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096 + 256:
        pytest.skip(f"the hard open-files limit ({hard}) leaves no room to raise")
    # In a child process, whose limits this test may change: 4,096 connections + 256 spare.
    done = subprocess.run([sys.executable, "-c", RAISE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4352", "4352", "4352"]  # raised, and never lowered


def test_the_timeouts_work_on_uvicorns_h11_protocol_too() -> None:
    """Without httptools, uvicorn speaks h11: the same mixin serves it."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    namespace = {"header_timeout": 0.5, "body_timeout": 0.5}
    protocol = type("H11WithTimeouts", (connections.ReadTimeouts, H11Protocol), namespace)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, port=port, http=protocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):  # until it listens
            if server.started:
                break
            time.sleep(0.05)
        half = socket.create_connection(("127.0.0.1", port), timeout=60)
        half.sendall(b"GET / HT")
        assert half.recv(100) == b""  # closed by the server (or the 60 s timeout raises)
        half.close()
        assert httpx.post(f"http://127.0.0.1:{port}/", content=b"x" * 100_000).text == "ok"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
