"""What an agent knows about itself: its tally of outcomes and a snapshot for the display.

The heartbeat sends the short form (`wire.AgentStatus`); `farmhand agent --display` draws the
long form (`AgentView`), built here from the agent's public state only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from farmhand import wire
from farmhand.runtime.outbox import Entry

if TYPE_CHECKING:
    from farmhand.runtime.agent import Agent

__all__ = ["OUTCOMES", "AgentView", "RunView", "Tally", "snapshot"]

log = logging.getLogger("farmhand.agent")

#: "refused": leases given back, for a runner or resources this agent lacks, or a runner that
#: could not start the command.
OUTCOMES = ("done", "failed", "released", "cancelled", "lost", "orphaned", "refused")


class Tally:
    """How the agent's runs ended, counted once the server has taken their reports."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._lock = threading.Lock()

    def count(self, outcome: str) -> None:
        """One more run ended with `outcome` (one of OUTCOMES)."""
        with self._lock:
            self.counts[outcome] += 1

    def delivered(self, entry: Entry, ack: wire.RunAck | None, problem: str | None) -> None:
        """The outbox settled a report: count and log it as the server saw it."""
        if entry.verb == "release":
            return  # counted as released when the attempt was dropped
        if ack is None:
            self.count("lost")  # its lease was gone; the outbox said why
        elif entry.verb == "complete":
            self.count("done")
            log.info("done %s", entry.label)
        elif entry.verb == "orphan":
            self.count("orphaned")
            log.warning("orphaned %s", entry.label)
        else:
            self.count("failed")
            log.info("failed %s", entry.label)

    def summary(self) -> str:
        """`3 done, 1 failed, 0 released, 0 cancelled, 0 lost, 0 orphaned, 0 refused`."""
        with self._lock:
            return ", ".join(f"{self.counts[o]} {o}" for o in OUTCOMES)


@dataclass
class RunView:
    """One lease the agent holds."""

    key: str
    run_id: int
    phase: str  # staging, queued (prefetched), running, reporting
    elapsed: float


@dataclass
class AgentView:
    """Everything the live display shows, at one moment."""

    name: str
    server: str
    state: str  # working, paused, draining, stopping
    slots: int
    prefetch: int
    runs: list[RunView] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    outbox: int = 0
    connected: bool | None = None  # None: not asked yet
    last_contact: float | None = None  # seconds since the server last answered
    server_error: str | None = None
    disk_path: str = ""
    disk_used: float | None = None
    disk_limit: float | None = None
    paused: str | None = None
    walltime_left: float | None = None

    @property
    def queued(self) -> int:
        """Prefetched leases waiting for a slot."""
        return sum(run.phase == "queued" for run in self.runs)


def snapshot(agent: Agent) -> AgentView:
    """The agent as the display draws it now."""
    now = time.monotonic()
    beat, outbox = agent.heartbeat, agent.outbox
    error = outbox.last_error or (beat.last_error if beat is not None else None)
    # Contact is any answer: a heartbeat's, or a claim's (an idle agent may send no beats).
    answers = [beat.last_ok if beat is not None else None]
    answers.append(agent.claimer.answered_at if agent.claimer is not None else None)
    last_ok = max((t for t in answers if t is not None), default=None)
    if agent.stopping:
        state = "draining" if agent.draining else "stopping"
    else:
        state = "paused" if agent.paused else "working"
    return AgentView(
        name=agent.name,
        server=agent.client.server,
        state=state,
        slots=agent.config.slots,
        prefetch=agent.prefetch.depth(),
        runs=[
            RunView(a.lease.key, a.lease.run_id, a.phase, now - a.began) for a in agent.attempts()
        ],
        counts=dict(agent.counts),
        outbox=len(outbox),
        connected=None if last_ok is None and error is None else error is None,
        last_contact=None if last_ok is None else now - last_ok,
        server_error=error,
        disk_path=str(agent.disk.path),
        disk_used=agent.disk.used,
        disk_limit=agent.disk.limit,
        paused=agent.paused,
        walltime_left=agent.walltime.left(),
    )
