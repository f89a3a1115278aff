"""What every attempt of one agent shares (`Context`), the environment a run's command gets,
and the small helpers the agent loop uses too: how an exit is described and how a lease is
given back."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.client.credentials import SECRET_ENV, TOKEN_FILE_ENV
from farmhand.runtime.files.stage_in import Prepared, SnapshotSettings
from farmhand.runtime.outbox import Outbox
from farmhand.runtime.resources.allocation import Allocator
from farmhand.runtime.resources.crew import Crew
from farmhand.runtime.resources.slots import Slots
from farmhand.runtime.runners.definitions import Runners
from farmhand.runtime.starts import Starts

__all__ = [
    "PRIVATE_ENV",
    "RELEASE_REASONS",
    "Context",
    "describe_exit",
    "digest",
    "release",
    "run_environment",
]

#: Why an aborted attempt gives its record back, as the run's error shows it.
RELEASE_REASONS = {
    "shutdown": "agent shutting down",
    "walltime": "the agent's batch job is ending (walltime drain)",
}
#: Secrets of the agent itself that a user's command must not inherit (the token file's path
#: too: the command runs as the same user and could read the file).
PRIVATE_ENV = (*SECRET_ENV, TOKEN_FILE_ENV)


class StopState:
    """Where an agent's stop stands, and the events that wake its threads when it moves.

    `requested` (with its `reason`): a stop was asked for — `stop()`, `drain()`, idleness, a
    refused claim. `began`: the shutdown is under way (claims stop, attempts are ended).
    Plain attributes and `request` take no locks, so a signal handler may set them.
    """

    def __init__(self) -> None:
        self.started = False  #: `run()` was called: an agent runs once
        self.requested = False
        self.reason = ""
        self.draining = False  #: the stop is a walltime drain: checkpoint first
        self.kill_now = False  #: a second stop(): no grace any more
        self.began = threading.Event()
        self.wake = threading.Event()  #: the main loop: look again now
        self.claim_wake = threading.Event()  #: the claim thread: look again now
        # The client is closed by whichever finishes last: the shutdown, or the claim
        # thread (an in-flight long poll may outlive run()).
        self._lock = threading.Lock()
        self._closers_left = 2
        self._arrivals: int | None = None  # read end of the signal wakeup pipe, if watched

    def watch_signals(self) -> None:
        """Learn of a stop signal the moment it arrives, before its handler has run (call
        from the main thread, with the handlers installed; they call `signal_handled`).

        The batch system signals every process of a job step: a command may end on the
        signal a hair before the agent's own handler, which waits for the main thread and
        the GIL, marks the stop. `await_signals` lets an attempt wait for that handler."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._arrivals = read_end

    def signal_handled(self) -> None:
        """A handler has acted on the signals that arrived so far (from the handler)."""
        if self._arrivals is None:
            return
        try:
            while os.read(self._arrivals, 64):
                pass
        except BlockingIOError:
            pass

    def await_signals(self, timeout: float = 2.0) -> None:
        """Wait (up to `timeout` s) until every signal that has arrived was handled."""
        fd = self._arrivals
        if fd is None:
            return
        deadline = time.monotonic() + timeout
        watch = select.poll()
        watch.register(fd, select.POLLIN)
        while watch.poll(0) and time.monotonic() < deadline:
            time.sleep(0.001)

    @property
    def stopped(self) -> bool:
        """Whether claims should stop: a stop was requested or has begun."""
        return self.requested or self.began.is_set()

    def request(self, reason: str) -> bool:
        """Ask for a stop (False when one was asked for already: it never escalates)."""
        if self.requested:
            return False
        self.reason = reason or "stop requested"
        self.requested = True
        if threading.current_thread() is not threading.main_thread():
            # A signal handler runs on the main thread and may interrupt Event.wait while it
            # holds the event's lock; there, run() notices the flag within CHECK_EVERY.
            self.wake.set()
            self.claim_wake.set()
        return True

    def last_to_finish(self) -> bool:
        """Called once by the shutdown and once by the claim thread: True for the later."""
        with self._lock:
            self._closers_left -= 1
            return self._closers_left == 0


@dataclass
class Context:
    """What every attempt of one agent shares with it."""

    client: FarmhandClient
    workdir: Path
    agent_name: str
    term_grace: float
    report_deadline: float
    stop: StopState  # where the agent's stop stands
    count: Callable[[str], None]  # released, cancelled, lost, refused (the rest at delivery)
    runners: Runners
    allocator: Allocator
    outbox: Outbox
    snapshots: SnapshotSettings
    starts: Starts  # run starts, sent in batches while the commands run
    slots: Slots | None = None  # held while a command runs; prefetched leases queue for one
    crew: Crew = field(default_factory=Crew)  # the threads attempts run on
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    run_umask: int | None = None  # the commands' umask (None: the agent's own)
    on_runner_broken: Callable[[], None] | None = None  # a runner is no longer offered

    @functools.cached_property
    def base_env(self) -> dict[str, str]:
        """The agent's environment without its secrets, what every run starts from (made
        once: it was ~75 variables copied per record). Runners copy it, never change it."""
        return {k: v for k, v in self.environ.items() if k not in PRIVATE_ENV}


def run_timeout(run_args: dict[str, Any]) -> float | None:
    """`run_args.timeout` of a lease's effective run_args: seconds a run's command may take
    before it is killed (None: no limit), in the forms `walltime` takes (`3600`, `1h`,
    `01:00:00`: `wire.timeout_seconds`). ValueError names a value that is not a positive
    duration."""
    return wire.timeout_seconds(run_args)


def describe_exit(code: int) -> str:
    """A failed run's error for an exit status: "exit code 3", "killed by signal SIGKILL"."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def digest(token: str) -> str:
    """Eight hex digits that tell leases apart without revealing the token (container
    names are visible to every user of the node)."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def release(outbox: Outbox, lease: wire.Lease, reason: str) -> None:
    """Give a lease back without spending its attempt (through the outbox, so it reaches a
    server that is down right now); a lease already gone is fine."""
    body = wire.RunRelease(token=lease.token, reason=reason[:1024])
    outbox.put(lease.run_id, "release", body, f"{lease.key} (run {lease.run_id})")


def report_orphan(outbox: Outbox, lease: wire.Lease, reason: str, label: str) -> None:
    """Spool the orphan report of the lease's record; `label` names it in logs.

    When the runner a record asks for is unknown here, or its run directory cannot be staged
    (an input or a parent's result cannot be written), failing the attempt would punish the
    record for the agent's shortcoming. The server keeps an orphan as `orphaned` with the
    reason and spends no attempt; `farmhand retry --orphans` queues it again once the cause
    is fixed. The agent counts it as `orphaned` once the server has taken the report."""
    body = wire.RunOrphan(token=lease.token, reason=reason[:4096])
    outbox.put(lease.run_id, "orphan", body, label)


def run_environment(
    lease: wire.Lease,
    run_dir: Path,
    share: dict[str, str],
    *,
    agent_name: str,
    prepared: Prepared | None,
) -> dict[str, str]:
    """What a run adds to the agent's environment: its `share` of the node's resources, its
    params as FARMHAND_PARAM_<name> (the name as it is), the record's `env`, then the other
    FARMHAND_* variables. ValueError for an `env` that is no table."""
    extra = lease.run_args.get("env") or {}
    if not isinstance(extra, dict):
        raise ValueError(f"run_args.env must be a table of NAME = value, not {extra!r}")
    env = dict(share)
    for name, value in lease.params.items():
        env[f"FARMHAND_PARAM_{name}"] = wire.param_text(value)
    for name, value in extra.items():
        env[str(name)] = value if isinstance(value, str) else json.dumps(value)
    if prepared is not None:
        env["FARMHAND_CHECKPOINT_DIR"] = str(prepared.checkpoint_dir)
        if prepared.restored:
            env["FARMHAND_RESTORED"] = "1"
    env.update(
        FARMHAND_RUN_ID=str(lease.run_id),
        FARMHAND_RECORD_ID=str(lease.record_id),
        FARMHAND_RECORD_KEY=lease.key,
        FARMHAND_CAMPAIGN_ID=str(lease.campaign_id),
        FARMHAND_ATTEMPT=str(lease.attempt),
        FARMHAND_AGENT_NAME=agent_name,
        FARMHAND_RUN_DIR=str(run_dir),
    )
    return env
