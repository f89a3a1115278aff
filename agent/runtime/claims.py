"""The claim thread's loop: lease as much work as there is room for, in one request.

While there is nothing to claim the request long-polls; the time between two empty claims
grows with jitter up to `--poll` seconds, so idle agents that went quiet together do not keep
asking in step, and a server that answers at once (one that does not hold the long poll) is
not asked again at once. While the agent is paused (disk guard, walltime) it claims nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from farmhand import wire
from farmhand.client import ApiError, Conflict, FarmhandClient, ServerUnavailable
from farmhand.client.retry import Backoff, is_transient
from farmhand.runtime.context import release
from farmhand.runtime.outbox import Outbox

__all__ = ["MIN_CLAIM_GAP", "ClaimLoop", "describe_leases", "give_back", "sort_leases"]

log = logging.getLogger("farmhand.agent")

#: Least seconds between the starts of two claims that found nothing.
MIN_CLAIM_GAP = 0.5
#: The first idle interval; it doubles (with jitter) up to the agent's --poll.
FIRST_IDLE = 1.0


@dataclass
class ClaimLoop:
    """What the claim thread needs from its agent, as plain callables.

    `room()` blocks until a lease could be taken and returns (free places, seconds idle), or
    None once the agent stops; `accept(leases, free)` takes up to `free` of them and returns
    how many it kept and how many it gave back as too long for its walltime; `paused()` is
    why not to claim now, if anything; `stop(reason, failed)` ends the agent.

    `sent_at` is when the claim under way or last answered went out (monotonic; None after
    a failed one), `answered_at` when the server last answered one.
    """

    client: FarmhandClient
    agent_id: int
    poll: float
    exit_when_idle: float | None
    campaign_id: int | None
    campaign_ids: list[int] | None
    datasets: list[str] | None
    runners: Callable[[], list[str]]  # asked each claim: a broken runner drops out
    free: Callable[[], wire.Resources]  # what a claimed record may need, asked each claim
    room: Callable[[], tuple[int, float] | None]
    accept: Callable[[list[wire.Lease], int], tuple[int, int]]
    paused: Callable[[], str | None]
    usable_time: Callable[[], float | None]
    stop: Callable[[str, bool], None]
    wake: threading.Event  # set to cut a pause short (stop, resume)
    sent_at: float | None = None
    answered_at: float | None = None

    def run(self) -> None:
        """Claim until the agent stops or has been idle for `exit_when_idle` seconds."""
        idle = Backoff(min(FIRST_IDLE, self.poll), self.poll)
        failures = Backoff(0.5, 30.0)
        extra = 0  # asked for beyond the free places, to get past records too long for us
        # Idle means the server said "nothing", not that it could not be asked: the agent
        # asks at least once (a slow start or a long wait for the server is not idleness),
        # and after a failed claim once more, before it exits as idle.
        answered = False
        while True:
            got = self.room()
            if got is None:
                return
            free, idle_for = got
            idle_left = None if self.exit_when_idle is None else self.exit_when_idle - idle_for
            if idle_left is not None and idle_left <= 0 and answered:
                log.info("nothing running and nothing to claim for %gs", self.exit_when_idle)
                self.stop(f"idle for {self.exit_when_idle:g}s", False)
                return
            interval = idle.next()
            if idle_left is not None:
                # A poll begun while attempts run ends before any deadline their end could set.
                interval = max(0.0, min(interval, idle_left))
            if self.paused() is not None:
                self._pause(interval)
                continue
            began = self.sent_at = time.monotonic()
            try:
                leases = self.client.claim(
                    self.agent_id,
                    min(free + extra, wire.MAX_CLAIM),
                    wait=min(interval, wire.MAX_WAIT_SECONDS),
                    campaign_id=self.campaign_id,
                    runners=self.runners(),
                    free=self.free(),
                    campaign_ids=self.campaign_ids,
                    datasets=self.datasets,
                    walltime_left=self.usable_time(),
                )
            except Conflict as exc:
                self.stop(f"the server refused claims: {exc.detail}", False)
                return
            except (ServerUnavailable, ApiError) as exc:
                if not is_transient(exc):
                    log.error("the server rejected this agent's claim: %s", exc)
                    self.stop(f"claim rejected: {exc}", True)
                    return
                self.sent_at = None  # the server may not have heard it
                pause = failures.next()
                log.warning("claim failed, retrying in %.1fs: %s", pause, exc)
                answered = False
                self._pause(pause)
                continue
            failures.reset()
            answered, self.answered_at = True, time.monotonic()
            kept, too_long = self.accept(leases, free) if leases else (0, 0)
            # The server filters by walltime_left, so records too long for this agent come
            # only from an older server (or a job end that moved); ask past them next time
            # (the surplus is given back).
            extra = min(wire.MAX_CLAIM, 2 * too_long) if too_long else 0
            if kept:
                idle.reset()
                continue
            # Found nothing to run: let this interval last its length (and MIN_CLAIM_GAP)
            # even when the server answered at once.
            rest = max(interval, MIN_CLAIM_GAP) - (time.monotonic() - began)
            if idle_left is not None:
                rest = min(rest, idle_left - (time.monotonic() - began))
            self._pause(rest)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.wake.wait(seconds)
        self.wake.clear()


Refused = list[tuple[wire.Lease, str]]


def sort_leases(
    leases: list[wire.Lease], free: int, refuses: Callable[[wire.Lease], str | None]
) -> tuple[list[wire.Lease], Refused, Refused]:
    """Split a claim's leases, in order, into (to run, too long for the walltime, beyond the
    `free` places); the last two with the reason they are given back."""
    fitting: list[wire.Lease] = []
    too_long: Refused = []
    surplus: Refused = []
    for lease in leases:
        why = refuses(lease)
        if why is not None:
            too_long.append((lease, why))
        elif len(fitting) < free:
            fitting.append(lease)
        else:
            surplus.append((lease, "more than this agent had room for"))
    return fitting, too_long, surplus


def give_back(
    outbox: Outbox,
    count: Callable[[str], None],
    refused: Refused,
    released: Refused,
) -> None:
    """Give back what a claim brought but this agent will not run, spending no attempt:
    `refused` (a runner or resources it lacks: a warning) and `released` (too long for its
    walltime, or beyond its free places)."""
    for lease, why in refused:
        log.warning("giving back %s (run %d): %s", lease.key, lease.run_id, why)
        release(outbox, lease, why)
        count("refused")
    for lease, why in released:
        log.info("released %s (run %d): %s", lease.key, lease.run_id, why)
        release(outbox, lease, why)
        count("released")


def describe_leases(leases: list[wire.Lease], most: int = 8) -> str:
    """`a (run 1), b (run 2) and 5 more` for logs."""
    shown = ", ".join(f"{lease.key} (run {lease.run_id})" for lease in leases[:most])
    more = f" and {len(leases) - most} more" if len(leases) > most else ""
    return shown + more
