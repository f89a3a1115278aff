"""What every attempt of one agent shares (`Context`), the environment a run's command gets,
and the small helpers the agent loop uses too: how an exit is described and how a lease is
given back."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from farmhand.agent import wire
from farmhand.agent.allocation import Allocator
from farmhand.agent.client import FarmhandClient
from farmhand.agent.credentials import SECRET_ENV, TOKEN_FILE_ENV
from farmhand.agent.outbox import Outbox
from farmhand.agent.runners.definitions import Runners
from farmhand.agent.slots import Slots
from farmhand.agent.stage_in import Prepared, SnapshotSettings

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


@dataclass
class Context:
    """What every attempt of one agent shares with it."""

    client: FarmhandClient
    workdir: Path
    agent_name: str
    term_grace: float
    report_deadline: float
    stopping: threading.Event
    count: Callable[[str], None]  # "released", "cancelled", "lost" (the rest at delivery)
    runners: Runners
    allocator: Allocator
    outbox: Outbox
    snapshots: SnapshotSettings
    slots: Slots | None = None  # held while a command runs; prefetched leases queue for one
    stop_requested: bool = False  # set (from a signal handler too) once a stop is asked for
    draining: bool = False  # ...and it is the walltime drain
    kill_now: bool = False  # a second stop(): no grace any more
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    run_umask: int | None = None  # the commands' umask (None: the agent's own)


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


def run_environment(
    lease: wire.Lease,
    run_dir: Path,
    share: dict[str, str],
    *,
    agent_name: str,
    prepared: Prepared | None,
) -> dict[str, str]:
    """What a run adds to the agent's environment: its `share` of the node's resources, the
    record's `env`, then the FARMHAND_* variables. ValueError for an `env` that is no table."""
    extra = lease.run_args.get("env") or {}
    if not isinstance(extra, dict):
        raise ValueError(f"run_args.env must be a table of NAME = value, not {extra!r}")
    env = dict(share)
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
