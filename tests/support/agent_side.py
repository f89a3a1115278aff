"""Helpers for agent tests: start real commands, wait for conditions, check processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from farmhand.runtime.runners import Launch, RunningProcess
from farmhand.runtime.runners.subprocess import SubprocessRunner


class Probe:
    """Waiting for conditions and looking at processes, without fixed sleeps."""

    @staticmethod
    def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
        """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
            time.sleep(0.02)

    def read_pid(self, path: Path, timeout: float = 15.0) -> int:
        """Wait for a command to write a pid into `path` and return it."""
        self.wait_until(
            lambda: path.exists() and path.read_text().strip().isdigit(),
            timeout,
            what=f"a pid in {path}",
        )
        return int(path.read_text())

    @staticmethod
    def is_dead(pid: int) -> bool:
        """True if `pid` is gone or a zombie.

        A killed grandchild whose parent died is reparented to PID 1; some container inits
        (this sandbox's among them) never reap, so it stays a zombie: dead, yet
        `kill(pid, 0)` succeeds.
        """
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except FileNotFoundError:
            return True
        return stat[stat.rfind(b")") + 2 :].split()[0] in (b"Z", b"X")


@pytest.fixture
def probe() -> Probe:
    """`probe.wait_until(...)`, `probe.read_pid(path)`, `probe.is_dead(pid)`."""
    return Probe()


class Spawner:
    """Starts commands with the subprocess runner and kills their groups at teardown."""

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path
        self.started: list[RunningProcess] = []

    def __call__(self, command: str, env: dict[str, str] | None = None) -> RunningProcess:
        handle = SubprocessRunner().start(
            Launch(
                command=command,
                run_dir=self.dir,
                stdout=self.dir / "stdout.txt",
                stderr=self.dir / "stderr.txt",
                base_env=os.environ,
                run_env=env or {},
            )
        )
        self.started.append(handle)
        return handle

    def cleanup(self) -> None:
        for handle in self.started:
            handle.kill()
            handle.wait(5)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    """`spawn(command)` → a RunningProcess in tmp_path; every group is killed afterwards."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.cleanup()


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Agent tests run on SQLite only: they test the agent, its client and the CLI. The
    server statements they reach are tested on both databases under tests/server (and end to
    end, with real agents, under tests/e2e)."""
    return request.param
