"""Runners: how an agent starts one run's command and how it stops it again.

A runner turns a shell command into a `RunningProcess`: a handle on a process that leads its
own process group, so that stopping a run (`terminate`) reaches every process the command
started, grandchildren included, even after the command's shell has already exited.

`runner_for(name)` looks runners up by the name a record gives in its run_args
(`runner = "subprocess"` is the default). Container runners register themselves with
`register_runner` in a later issue.
"""

from __future__ import annotations

import os
import signal
import subprocess as _subprocess  # bare `subprocess` here is our submodule once imported
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = [
    "DEFAULT_RUNNER",
    "Runner",
    "RunningProcess",
    "group_alive",
    "register_runner",
    "runner_for",
    "runner_names",
]

DEFAULT_RUNNER = "subprocess"

#: How long `terminate` waits for the group to vanish after SIGKILL before giving up.
_KILL_WAIT = 5.0
_POLL = 0.05  # /proc scans while waiting for a group to empty


class Runner(Protocol):
    """Starts commands; each started command leads a new process group."""

    name: str

    def start(
        self, command: str, *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path
    ) -> RunningProcess:
        """Start `command` in `cwd` with exactly `env`, appending its output to the two files."""
        ...


def group_alive(pgid: int) -> bool:
    """Whether any process that is not a zombie is still in process group `pgid`.

    `killpg(pgid, 0)` alone is not enough: killed processes whose parent died stay zombies in
    the group until PID 1 reaps them, and some container init processes never do.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True  # no procfs: trust killpg
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    text = stat.read()
            except OSError:
                continue  # exited while we looked
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = text[text.rfind(b")") + 2 :].split()
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


class RunningProcess:
    """A started command: the leader of process group `pid`.

    The exit status follows `subprocess`: a non-negative exit code, or `-N` when signal N
    killed the command.
    """

    def __init__(self, popen: _subprocess.Popen[bytes]):
        self._popen = popen
        self.pid: int = popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once known, else None."""
        return self._popen.returncode

    def poll(self) -> int | None:
        """The exit status if the command has exited, else None (never blocks)."""
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` seconds (forever if None); the exit status, or None on timeout."""
        try:
            return self._popen.wait(timeout)
        except _subprocess.TimeoutExpired:
            return None

    def signal_group(self, signum: int) -> bool:
        """Send `signum` to the whole group; False when no process is left in it.

        Safe to call from a signal handler (one system call, no locks).
        """
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def kill(self) -> None:
        """SIGKILL the whole group at once, without waiting (used to escalate a shutdown)."""
        self.signal_group(signal.SIGKILL)

    def terminate(self, grace: float) -> int:
        """SIGTERM the group, wait up to `grace` seconds, then SIGKILL what is left.

        Returns the command's exit status. Safe to call twice and after the command exited:
        members of the group that outlived the command (background jobs) are stopped too.
        """
        if self.signal_group(signal.SIGTERM) and not self._wait_group(grace):
            self.signal_group(signal.SIGKILL)
            self._wait_group(_KILL_WAIT)
        code = self.wait(_KILL_WAIT)
        # A process stuck in uninterruptible sleep can outlive even SIGKILL's wait; report
        # it as killed rather than blocking the agent forever.
        return code if code is not None else -signal.SIGKILL

    def reap_strays(self, grace: float) -> None:
        """After the command exited, stop anything it left running in its group."""
        if self.signal_group(signal.SIGTERM):
            self.terminate(grace)

    def _wait_group(self, timeout: float) -> bool:
        """Wait until the leader exited and the group holds no live process; True if so."""
        deadline = time.monotonic() + timeout
        while True:
            if self.poll() is not None and not group_alive(self.pid):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL, left))


RunnerFactory = Callable[[], Runner]

_FACTORIES: dict[str, RunnerFactory] = {}


def _subprocess_runner() -> Runner:
    from farmhand.agent.runners.subprocess import SubprocessRunner

    return SubprocessRunner()


_FACTORIES[DEFAULT_RUNNER] = _subprocess_runner


def register_runner(name: str, factory: RunnerFactory) -> None:
    """Make `runner_for(name)` return `factory()`; replaces an earlier entry of that name."""
    _FACTORIES[name] = factory


def runner_names() -> list[str]:
    """The names `runner_for` knows, sorted."""
    return sorted(_FACTORIES)


def runner_for(name: str | None = None) -> Runner:
    """The runner called `name` (default "subprocess"); ValueError names an unknown one."""
    name = DEFAULT_RUNNER if name is None else name
    factory = _FACTORIES.get(name) if isinstance(name, str) else None
    if factory is None:
        known = ", ".join(repr(n) for n in runner_names())
        raise ValueError(f"unknown runner {name!r}; this agent knows {known}")
    return factory()
