"""The agent's intake: the claim thread's callbacks — room for more, the resources a claim
may ask for, taking the leases that came (an `Attempt` each) and giving back the rest — and
the bookkeeping when attempts end and reports settle. A part of `Agent` (`agent.py`), kept
in its own module; it uses the agent's attributes set in `Agent.__init__`.
"""

from __future__ import annotations

import logging
import threading
import time

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.attempt import Attempt, Context, release
from farmhand.runtime.claims import ClaimLoop, describe_leases, give_back, sort_leases
from farmhand.runtime.config import AgentConfig
from farmhand.runtime.context import StopState
from farmhand.runtime.outbox import Entry, Outbox
from farmhand.runtime.resources.allocation import Allocator
from farmhand.runtime.resources.placement import plan
from farmhand.runtime.resources.prefetch import Prefetch
from farmhand.runtime.resources.walltime import Walltime
from farmhand.runtime.runners.definitions import Runners
from farmhand.runtime.tally import Tally

__all__ = ["Intake"]

log = logging.getLogger("farmhand.agent")


class Intake:
    """The claim side of `Agent` (see the module docstring)."""

    # Set by Agent.__init__ (and _prepare):
    config: AgentConfig
    name: str
    client: FarmhandClient
    agent_id: int | None
    lease_ttl: float | None
    exit_status: int
    tally: Tally
    runners: Runners
    allocator: Allocator
    prefetch: Prefetch
    walltime: Walltime
    outbox: Outbox
    paused: str | None
    _cond: threading.Condition
    _attempts: dict[int, Attempt]
    _last_busy: float
    _stop: StopState
    _context: Context
    claimer: ClaimLoop | None

    def _request_stop(self, reason: str) -> None:
        raise NotImplementedError

    def _close_client(self) -> None:
        raise NotImplementedError

    def _stopped(self) -> bool:
        return self._stop.stopped

    def _claim_loop(self) -> None:
        assert self.agent_id is not None and self.lease_ttl is not None
        cfg = self.config
        loop = ClaimLoop(
            client=self.client,
            agent_id=self.agent_id,
            poll=min(cfg.poll_wait, wire.MAX_WAIT_SECONDS),
            exit_when_idle=cfg.exit_when_idle,
            campaign_id=cfg.campaign_id,
            campaign_ids=cfg.campaign_ids,
            datasets=cfg.datasets,
            runners=self.runners.offered,
            free=self._free,
            room=self._room,
            accept=self._accept,
            paused=self._claim_pause,
            usable_time=self.walltime.usable,
            stop=self._claims_over,
            wake=self._stop.claim_wake,
        )
        self.claimer = loop  # its times tell the heartbeat and the display of contact
        try:
            # What an earlier process left goes first, while its leases may still be live.
            self.outbox.flush(self.lease_ttl, interrupted=self._stopped)
            with self._cond:  # the idle clock starts with the first claim, not at __init__
                self._last_busy = time.monotonic()
            loop.run()
        except Exception:
            log.exception("the claim loop failed; stopping")
            self._claims_over("claim loop failed", True)
        finally:
            # An in-flight long poll may outlive run(): the later of the two closes.
            if self._stop.last_to_finish():
                self._close_client()

    def _claims_over(self, reason: str, failed: bool) -> None:
        if failed:
            self.exit_status = 1
        self._request_stop(reason)

    def _room(self) -> tuple[int, float] | None:
        """Block until leases fit (slots + prefetch, as many free places as a claim is
        worth; without prefetch also some free cores); (free places, seconds idle). Attempts
        whose command has ended (packing their archive, reporting) hold no place, but at
        most `slots` of them may be in flight."""
        cfg = self.config
        with self._cond:
            while not self._stopped():
                ahead = self.prefetch.depth()
                capacity = cfg.slots + ahead
                reporting = sum(1 for a in self._attempts.values() if a.phase == "reporting")
                held = len(self._attempts) - reporting
                if (
                    capacity - held >= self.prefetch.least_claim()
                    and reporting <= cfg.slots
                    and (ahead or self.allocator.has_room())
                ):
                    break
                self._cond.wait(1.0)
            if self._stopped():
                return None
            # Reports not yet delivered may make records ready (a parent's completion): the
            # agent is idle only once nothing runs and nothing waits in its outbox.
            if self._attempts or len(self.outbox):
                self._last_busy = time.monotonic()
            return capacity - held, time.monotonic() - self._last_busy

    def _free(self) -> wire.Resources:
        """The resources a claim may ask for: the free share now; with prefetch, anything
        that fits the agent at all (a prefetched lease waits for its share as for its slot,
        in claim order)."""
        if self.prefetch.depth():
            return self.allocator.total.to_wire()
        return self.allocator.free()

    def _claim_pause(self) -> str | None:
        if self.walltime.drain_due():
            return "the walltime drain is due"
        return self.paused

    def _accept(self, leases: list[wire.Lease], free: int) -> tuple[int, int]:
        """Start an attempt per lease that fits, up to `free`; give back the rest. Returns
        (kept, given back as too long for the walltime)."""
        plans = {lease.run_id: plan(lease, self.runners, self.allocator) for lease in leases}
        refused = [lease for lease in leases if plans[lease.run_id].refusal is not None]
        runnable = [lease for lease in leases if plans[lease.run_id].refusal is None]
        fitting, too_long, surplus = sort_leases(runnable, free, self.walltime.refuses)
        with self._cond:
            late = self._stopped()
            if not late:
                for lease in fitting:
                    attempt = Attempt(
                        lease,
                        self._context,
                        self._attempt_ended,
                        plans[lease.run_id],
                        on_command_end=self._command_ended,
                    )
                    self._attempts[lease.run_id] = attempt
                    attempt.thread.start()  # under the lock, so a shutdown can join it
                    self._last_busy = time.monotonic()
        if late:
            log.info("releasing %d lease(s) that arrived during shutdown", len(leases))
            for lease in leases:
                release(self.outbox, lease, "agent shutting down")
            return 0, 0
        # A runner or resources this agent lacks (a definition changed since the claim).
        lacking = [
            (lease, f"agent {self.name}: {plans[lease.run_id].refusal}") for lease in refused
        ]
        give_back(self.outbox, self.tally.count, lacking, too_long + surplus)
        if fitting:
            log.info("claimed %d: %s", len(fitting), describe_leases(fitting))
        return len(fitting), len(too_long)

    def _report_settled(self, entry: Entry, ack: wire.RunAck | None, problem: str | None) -> None:
        """The outbox settled a report: count it; the idle clock starts again from now."""
        self.tally.delivered(entry, ack, problem)
        with self._cond:
            self._last_busy = time.monotonic()

    def _command_ended(self, attempt: Attempt) -> None:
        """An attempt's command is over: its place may take the next lease already."""
        if attempt.command_began is not None:
            self.prefetch.command_ended(time.monotonic() - attempt.command_began)
        with self._cond:
            self._cond.notify_all()
        self._stop.claim_wake.set()

    def _attempt_ended(self, attempt: Attempt) -> None:
        with self._cond:
            self._attempts.pop(attempt.lease.run_id, None)
            self._last_busy = time.monotonic()
            self._cond.notify_all()
        # Its share is free again: a claim pausing after records it had to give back (or
        # found nothing that fitted the share then) may find something now.
        self._stop.claim_wake.set()
