"""Starting a shell command in one system call: `os.posix_spawn` instead of
`subprocess.Popen`, for the default runner's `sh -c SCRIPT`.

Popen makes a dozen system calls in the agent per command (the two output files opened and
inspected, a pipe for exec errors, its reads and closes), and each gives the GIL away: with
8 slots of short commands the other threads took it at every one, and a start took 11 ms on
average (measured, 2 cores). posix_spawn is one call that opens the child's files in the
child, about half the agent's CPU per start.

It cannot change the child's directory or umask (Python does not offer glibc's
`posix_spawn_file_actions_addchdir_np`), so the shell does both, first: the script begins
with `cd -- RUN_DIR || exit 126; umask NNNN;` on its first line. Container runners, whose
program is an engine and not a shell, keep Popen (`start_group`).
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from farmhand.runtime.runners.libc import Libc

__all__ = ["CD_FAILED", "SPAWNS", "Spawned", "spawn_shell"]

#: Whether `spawn_shell` works here: Linux (glibc and musl start the child with a vfork-like
#: clone, and know POSIX_SPAWN_SETSID); elsewhere the default runner uses Popen.
SPAWNS = sys.platform.startswith("linux") and hasattr(os, "posix_spawn")

#: The exit status of a command whose run directory could not be entered.
CD_FAILED = 126

_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND  # no O_CLOEXEC: they are the child's
#: What Popen's restore_signals gives back their default (Python ignores them).
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


def spawn_shell(
    shell: str,
    script: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: Path,
    stderr: Path,
    umask: int | None = None,
) -> Spawned:
    """Start `shell -c SCRIPT` in `cwd` as the leader of a new session (so of its own process
    group), with empty stdin, its output appended to the two files and `umask` (None: the
    agent's). OSError names the shell when it cannot be executed, else the output file
    that cannot be opened."""
    prefix = f"cd -- {shlex.quote(os.fspath(cwd))} || exit {CD_FAILED}; "
    if umask is not None:
        prefix += f"umask {umask:04o}; "
    out, err = os.fspath(stdout), os.fspath(stderr)
    try:
        spawner = _libc()
        if spawner is not None:
            pid = spawner.spawn(
                os.fsencode(shell),
                [os.fsencode(shell), b"-c", os.fsencode(prefix + script)],
                [_env_entry(key, value) for key, value in env.items()],
                [
                    (0, os.fsencode(os.devnull), os.O_RDONLY, 0),
                    (1, os.fsencode(out), _APPEND, 0o666),
                    (2, os.fsencode(err), _APPEND, 0o666),
                ],
            )
        else:
            pid = os.posix_spawn(
                shell,
                [shell, "-c", prefix + script],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, out, _APPEND, 0o666),
                    (os.POSIX_SPAWN_OPEN, 2, err, _APPEND, 0o666),
                ],
                setsid=True,
                setsigdef=_DEFAULT_SIGNALS,
                setsigmask=(),
            )
    except OSError as exc:
        # posix_spawn names the program whatever failed; find out which it was.
        if not os.access(shell, os.X_OK):
            raise OSError(exc.errno, exc.strerror, shell) from None
        for path in (out, err):
            os.close(os.open(path, _APPEND | os.O_CLOEXEC, 0o666))  # raises, naming it
        raise OSError(exc.errno, exc.strerror) from None  # they open now: a passing fault
    return Spawned(pid)


def _libc() -> Libc | None:
    """The C library's posix_spawn through ctypes (it frees the GIL while the child starts:
    `libc.py`), unless FARMHAND_SPAWN=os asks for `os.posix_spawn`; None where unreachable."""
    if os.environ.get("FARMHAND_SPAWN") == "os":
        return None
    from farmhand.runtime.runners.libc import libc  # ctypes: only for commands

    return libc(_DEFAULT_SIGNALS)


@functools.lru_cache(maxsize=4096)
def _env_entry(key: str, value: str) -> bytes:
    """`KEY=value` as exec takes it; the agent's own variables recur, so each is encoded
    once."""
    return os.fsencode(key) + b"=" + os.fsencode(value)


class Spawned:
    """A child started by `spawn_shell`: the part of `subprocess.Popen` a `RunningProcess`
    uses (`pid`, `returncode`, `poll`, `wait`). One thread may wait while others poll."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._waitpid = threading.Lock()

    def poll(self) -> int | None:
        """The exit status if the child has exited (reaping it), else None; never blocks."""
        if self.returncode is None and self._waitpid.acquire(blocking=False):
            try:
                self._reap(os.WNOHANG)
            finally:
                self._waitpid.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status; `subprocess.TimeoutExpired` after `timeout` seconds."""
        if timeout is None:
            with self._waitpid:
                if self.returncode is None:
                    self._reap(0)
            assert self.returncode is not None
            return self.returncode
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:  # as Popen.wait: a short sleep, doubling to 50 ms
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            delay = min(delay * 2, left, 0.05)
            time.sleep(delay)
        assert self.returncode is not None
        return self.returncode

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            self.returncode = 0  # reaped elsewhere (SIGCHLD ignored): as Popen says
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)
