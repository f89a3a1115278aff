"""Runners: how an agent starts one run's command and how it stops it again (files in
agent/runtime/runners/).

The protocol is small: a runner has a `name` and `start(launch)`, which starts the command
described by a `Launch` (command, run directory, environment, output files) and returns a
`RunningProcess`. The handle reports the exit status (`poll`, `wait`) and stops the run
(`terminate`: SIGTERM, a grace period, SIGKILL). The process leads its own process group, so
stopping a run reaches every process the command started, grandchildren included, even after
the command's shell has already exited. Runners that start work outside that group (a
container engine's daemon) extend `terminate` to stop it too.

When the runner itself cannot start the command — its program cannot be executed
(`RunnerFailure` from `start`), or its container engine exits with its own error status
(`RunningProcess.engine_error`) — that is not the calculation's fault: the agent gives the
record back without spending an attempt, and stops offering a runner that fails so several
times in a row (`definitions.Runners.failed`).

Built-in kinds: `subprocess` (`farmhand.runtime.runners.subprocess`, the default) and
`container` (`farmhand.runtime.runners.container`); `farmhand.runtime.runners.definitions` reads
the `runners.d` files that name and configure them.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import subprocess as _subprocess  # bare `subprocess` here is our submodule once imported
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DEFAULT_RUNNER",
    "Launch",
    "Runner",
    "RunnerFailure",
    "RunningProcess",
    "compose_script",
    "group_alive",
    "start_group",
]

DEFAULT_RUNNER = "subprocess"

#: How long `terminate` waits for the group to vanish after SIGKILL before giving up.
_KILL_WAIT = 5.0
_POLL = 0.05  # /proc scans while waiting for a group to empty


class RunnerFailure(Exception):
    """The runner could not start the command (its own program is missing or cannot be
    executed): not the calculation's fault, so no attempt is spent on it."""


@dataclass(frozen=True)
class Launch:
    """Everything a runner needs to start one run.

    `base_env` is the agent's own environment (without its secrets); `run_env` is what
    farmhand and the record add for this run (FARMHAND_*, the resource variables, the
    record's `env`). A native run sees both; a container engine is itself started with
    `base_env` and passes `run_env` into the container.
    """

    command: str
    run_dir: Path
    stdout: Path
    stderr: Path
    base_env: Mapping[str, str] = field(default_factory=dict)
    run_env: Mapping[str, str] = field(default_factory=dict)
    name: str = "farmhand-run"  # unique per run: names its container
    run_args: Mapping[str, Any] = field(default_factory=dict)  # the lease's effective ones
    umask: int | None = None  # the command's umask (None: the agent's own)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a native run: the agent's, then the run's on top."""
        return {**self.base_env, **self.run_env}


class Runner(Protocol):
    """Starts commands; each started command leads a new process group."""

    name: str

    def start(self, launch: Launch) -> RunningProcess:
        """Start `launch.command` in `launch.run_dir`, appending its output to the two files."""
        ...


def compose_script(setup: Sequence[str], command: str) -> str:
    """The script for `sh -c`: each setup line runs first in the same shell (so `source
    env.sh` reaches the command) and a failing one ends the script with its status.

    Braces rather than `setup && command`: the command may span lines, and a `#` comment
    in a setup line must not swallow what follows it.
    """
    lines = [f"{{ {line}\n}} || exit $?" for line in setup]
    return "\n".join([*lines, command])


@functools.lru_cache(maxsize=4096)
def _env_entry(key: str, value: str) -> tuple[bytes, bytes]:
    """A variable as Popen passes it to exec. Given str, Popen encodes every variable of
    the environment again for each command (~100 µs for 75 of them); the agent's own
    variables are the same each time, so they are encoded once."""
    return os.fsencode(key), os.fsencode(value)


def start_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: Path,
    stderr: Path,
    umask: int | None = None,
) -> _subprocess.Popen[bytes]:
    """Start `argv` as the leader of a new session, hence of its own process group, with
    empty stdin, its output appended to the two files and `umask` (None: the agent's).

    `RunnerFailure` when `argv[0]` itself cannot be executed (missing, not executable): the
    runner's program, not the calculation, is at fault."""
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        try:
            return _subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(_env_entry(k, v) for k, v in env.items()),
                stdin=_subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                umask=-1 if umask is None else umask,
            )
        except OSError as exc:
            # Popen names the program when its exec failed (the directory, when chdir did).
            if exc.filename != argv[0]:
                raise
            raise RunnerFailure(f"cannot execute {argv[0]}: {exc.strerror or exc}") from exc


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


def _exit_fd(pid: int) -> int | None:
    """A pidfd that becomes readable when `pid` exits (Linux 5.3+), or None."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return pidfd_open(pid)
    except OSError:
        return None  # an older kernel, or a seccomp filter that forbids it: poll instead


class Process(Protocol):
    """What `RunningProcess` needs of its child: a `subprocess.Popen`, or a
    `spawn.Spawned`."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class RunningProcess:
    """A started command: the leader of process group `pid`.

    The exit status follows `subprocess`: a non-negative exit code, or `-N` when signal N
    killed the command.
    """

    def __init__(self, popen: Process):
        self._popen = popen
        self.pid: int = popen.pid
        self._exit_fd = _exit_fd(popen.pid)

    @property
    def returncode(self) -> int | None:
        """The exit status once known, else None."""
        return self._popen.returncode

    def poll(self) -> int | None:
        """The exit status if the command has exited, else None (never blocks)."""
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` seconds (forever if None); the exit status, or None on timeout."""
        fd = self._exit_fd
        if fd is not None and timeout is not None and self._popen.returncode is None:
            # Sleep in the kernel until the exit (Popen.wait with a timeout polls, waking
            # every few milliseconds: with many short commands that was a thread switch
            # storm); the exit is then reaped at once below.
            watch = select.poll()
            watch.register(fd, select.POLLIN)
            if not watch.poll(max(0, int(timeout * 1000))):
                return None
        try:
            code = self._popen.wait(timeout)
        except _subprocess.TimeoutExpired:
            return None
        self._close_exit_fd()
        return code

    def _close_exit_fd(self) -> None:
        fd, self._exit_fd = self._exit_fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self._close_exit_fd()

    def engine_error(self, code: int) -> str | None:
        """Why exit status `code` is a failure of the runner itself (a container engine that
        could not start the command), or None when it is the command's own status."""
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
