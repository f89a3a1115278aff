"""The agent: register, claim leases, run them, and shut down cleanly.

Threads: the caller's thread runs `Agent.run()` and only waits for a stop (so it stays free
to take signals); one claim thread long-polls for all free slots at once; each lease runs on
its own `Attempt` thread; the heartbeat thread renews every lease in one request.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from farmhand.agent import wire
from farmhand.agent.allocation import Allocator
from farmhand.agent.attempt import CHECK_EVERY, Attempt, Context, describe_exit, release
from farmhand.agent.client import (
    ApiError,
    Conflict,
    FarmhandClient,
    FarmhandError,
    ServerUnavailable,
)
from farmhand.agent.heartbeat import HeartbeatThread
from farmhand.agent.placement import plan
from farmhand.agent.resources import NodeResources, detect
from farmhand.agent.retry import is_transient
from farmhand.agent.runners import definitions

__all__ = ["Agent", "AgentConfig", "describe_exit", "install_signal_handlers"]

log = logging.getLogger("farmhand.agent")

#: Seconds, beyond the grace, that a shutdown waits for its runs to be released.
SHUTDOWN_SLACK = 5.0
#: Seconds a shutdown call (drain, release, deregister) may take against a hung server.
SHUTDOWN_CALL_TIMEOUT = 5.0
#: Least seconds between two claims that found nothing (when poll_wait is below it).
MIN_CLAIM_GAP = 0.5
#: Longest pause after a claim that brought only records this agent gave back.
MAX_REFUSED_PAUSE = 30.0
OUTCOMES = ("done", "failed", "released", "cancelled", "lost", "orphaned", "refused")


@dataclass
class AgentConfig:
    """What `farmhand agent` is told on its command line."""

    server: str
    token: str | None = None
    slots: int = 1
    workdir: Path = Path("farmhand-work")
    name: str | None = None  # default f"{hostname}-{pid}"
    exit_when_idle: float | None = None  # seconds with nothing running and nothing to claim
    campaign_id: int | None = None
    campaign_ids: list[int] | None = None  # claim only from these campaigns
    datasets: list[str] | None = None  # claim only records of these datasets
    poll_wait: float = 10.0  # long-poll seconds per claim (capped by wire.MAX_WAIT_SECONDS)
    term_grace: float = 5.0  # SIGTERM→SIGKILL grace when terminating a run
    report_deadline: float = 600.0  # how long a report retries an unreachable server
    runners: definitions.Runners | None = None  # default: only the built-in subprocess
    resources: NodeResources | None = None  # default: detected from the batch system and OS


class Agent:
    """A farmhand agent: `run()` works until `stop()` (or idleness) and returns 0."""

    def __init__(self, config: AgentConfig, client: FarmhandClient | None = None):
        if config.slots < 1:
            raise ValueError(f"slots must be at least 1, not {config.slots}")
        if config.poll_wait < 0 or config.term_grace < 0:
            raise ValueError("poll_wait and term_grace must not be negative")
        if config.exit_when_idle is not None and config.exit_when_idle < 0:
            raise ValueError("exit_when_idle must not be negative")
        self.config = config
        self.name = config.name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = client if client is not None else FarmhandClient(config.server, config.token)
        self._owns_client = client is None
        self.agent_id: int | None = None
        self.lease_ttl: float | None = None
        self.exit_status = 0
        # "refused": leases given back at once, for a runner or resources this agent lacks.
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.runners = config.runners or definitions.builtin()
        self.allocator = Allocator(config.resources or detect(), config.slots)
        self._cond = threading.Condition()
        self._attempts: dict[int, Attempt] = {}
        self._ended = 0  # attempts that ended, so a pause can end with one
        self._last_busy = time.monotonic()
        self._stopping = threading.Event()  # shutdown began: claims stop, attempts abort
        self._wake = threading.Event()
        self._stop_requested = False  # plain attributes: stop() may run in a signal handler
        self._stop_reason = ""
        self._started = False
        self._claimer_done = False
        self._close_when_claimer_done = False
        self._context = Context(
            client=self.client,
            workdir=Path(config.workdir).resolve(),
            agent_name=self.name,
            term_grace=config.term_grace,
            report_deadline=config.report_deadline,
            stopping=self._stopping,
            count=self._count,
            runners=self.runners,
            allocator=self.allocator,
        )

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Register, work until stopped (or idle), shut down cleanly; returns 0 (1 if the
        server rejected this agent). Registration errors propagate as `FarmhandError`."""
        if self._started:
            raise RuntimeError("an Agent runs once; create a new one")
        self._started = True
        if self._stop_requested:
            return 0
        try:
            self._register()
        except BaseException:
            self._close_client()
            raise
        assert self.agent_id is not None and self.lease_ttl is not None
        heartbeat = HeartbeatThread(
            self.client,
            self.agent_id,
            self.lease_ttl / 3,
            self._held_run_ids,
            self._on_cancel,
            self._on_lost,
        )
        claimer = threading.Thread(target=self._claim_loop, name="farmhand-claim", daemon=True)
        heartbeat.start()
        claimer.start()
        try:
            while not self._stop_requested:
                self._wake.wait(CHECK_EVERY)
                self._wake.clear()
        finally:
            self._shutdown(heartbeat)
        return self.exit_status

    def stop(self, reason: str = "") -> None:
        """Begin a graceful shutdown; calling it again while stopping SIGKILLs the running
        commands at once. Thread-safe, and safe in a signal handler (it takes no locks)."""
        if self._stop_requested:
            self._context.kill_now = True  # a shutdown not yet begun will use no grace
            if self._stopping.is_set():
                for attempt in list(self._attempts.values()):
                    attempt.kill()
            return
        self._request_stop(reason)

    def _request_stop(self, reason: str) -> None:
        """Begin a graceful shutdown unless one is already requested (never escalates)."""
        if self._stop_requested:
            return
        self._stop_reason = reason or "stop requested"
        self._stop_requested = True
        if threading.current_thread() is not threading.main_thread():
            # A signal handler runs on the main thread and may interrupt Event.wait while it
            # holds the event's lock; there, run() notices the flag within CHECK_EVERY.
            self._wake.set()

    @property
    def stopping(self) -> bool:
        """Whether the shutdown has begun (claims stopped, running commands being ended)."""
        return self._stopping.is_set()

    @property
    def running(self) -> int:
        """How many attempts this agent is working on."""
        with self._cond:
            return len(self._attempts)

    def _register(self) -> None:
        cfg = self.config
        self._context.workdir.mkdir(parents=True, exist_ok=True)
        answer = self.client.register(
            wire.AgentRegister(
                name=self.name,
                host=socket.gethostname(),
                pid=os.getpid(),
                slots=cfg.slots,
                runners=self.runners.offered(),
                resources=self.allocator.total.to_wire(),
            )
        )
        self.agent_id, self.lease_ttl = answer.agent.id, answer.lease_ttl
        log.info(
            "agent %s registered as agent %d at %s: %d slot(s), leases last %gs, work in %s",
            self.name,
            self.agent_id,
            self.client.server,
            cfg.slots,
            self.lease_ttl,
            self._context.workdir,
        )
        log.info(
            "runners: %s; resources: %s",
            ", ".join(self.runners.offered()),
            self.allocator.total.describe(),
        )

    def _shutdown(self, heartbeat: HeartbeatThread) -> None:
        log.info("agent %s stopping: %s", self.name, self._stop_reason or "interrupted")
        try:  # first, so our own releases below do not wake a long poll that re-claims them
            self.client.drain(self.agent_id, timeout=SHUTDOWN_CALL_TIMEOUT)
        except FarmhandError as exc:
            log.warning("could not drain agent %d: %s", self.agent_id, exc)
        with self._cond:
            self._stopping.set()
            attempts = list(self._attempts.values())
            for attempt in attempts:  # each attempt's thread terminates and releases it
                attempt.request_abort("shutdown")
            self._cond.notify_all()
        deadline = time.monotonic() + self.config.term_grace + SHUTDOWN_SLACK
        for attempt in attempts:
            attempt.thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [attempt.label() for attempt in attempts if attempt.thread.is_alive()]
        if stuck:
            log.warning(
                "shutdown did not finish for %s; deregistering releases their leases",
                ", ".join(stuck),
            )
        heartbeat.stop(timeout=1.0)
        try:
            self.client.deregister(self.agent_id, timeout=SHUTDOWN_CALL_TIMEOUT)
        except FarmhandError as exc:
            log.warning("could not deregister agent %d: %s", self.agent_id, exc)
        tally = ", ".join(f"{n} {outcome}" for outcome, n in self.counts.items())
        log.info("agent %s stopped: %s", self.name, tally)
        with self._cond:
            close_now = self._claimer_done
            self._close_when_claimer_done = not close_now
        if close_now:
            self._close_client()

    def _close_client(self) -> None:
        if self._owns_client:
            self.client.close()

    def _count(self, outcome: str) -> None:
        with self._cond:
            self.counts[outcome] += 1

    # --- claiming ------------------------------------------------------------------------

    def _stopped(self) -> bool:
        return self._stop_requested or self._stopping.is_set()

    def _claim_loop(self) -> None:
        try:
            self._claim_until_stopped()
        except Exception:
            log.exception("the claim loop failed; stopping")
            self.exit_status = 1
            self._request_stop("claim loop failed")
        finally:
            # An in-flight long poll may outlive run(); the client is closed by whichever
            # of the two finishes last.
            with self._cond:
                self._claimer_done = True
                close = self._close_when_claimer_done
            if close:
                self._close_client()

    def _claim_until_stopped(self) -> None:
        cfg = self.config
        failures = refused = 0
        while not self._stopped():
            with self._cond:
                while not self._stopped() and (
                    len(self._attempts) >= cfg.slots or not self.allocator.has_room()
                ):
                    self._cond.wait(1.0)
                if self._stopped():
                    return
                free = cfg.slots - len(self._attempts)
                ended = self._ended
                if self._attempts:
                    self._last_busy = time.monotonic()
                idle_for = time.monotonic() - self._last_busy
            wait = min(cfg.poll_wait, wire.MAX_WAIT_SECONDS)
            if cfg.exit_when_idle is not None:
                # Shrink the poll so it ends by the idle deadline; a poll begun while
                # attempts run ends before any deadline their end could set.
                wait = min(wait, cfg.exit_when_idle - idle_for)
                if wait <= 0:
                    log.info("nothing running and nothing to claim for %gs", cfg.exit_when_idle)
                    self._request_stop(f"idle for {cfg.exit_when_idle:g}s")
                    return
            try:
                leases = self.client.claim(
                    self.agent_id,
                    min(free, wire.MAX_CLAIM),
                    wait=wait,
                    campaign_id=cfg.campaign_id,
                    runners=self.runners.offered(),
                    free=self.allocator.free(),
                    campaign_ids=cfg.campaign_ids,
                    datasets=cfg.datasets,
                )
            except Conflict as exc:
                self._request_stop(f"the server refused claims: {exc.detail}")
                return
            except (ServerUnavailable, ApiError) as exc:
                if not is_transient(exc):
                    log.error("the server rejected this agent's claim: %s", exc)
                    self.exit_status = 1
                    self._request_stop(f"claim rejected: {exc}")
                    return
                failures += 1
                pause = random.uniform(0.5, 1.0) * min(30.0, 0.5 * 2 ** min(failures - 1, 6))
                log.warning("claim failed, retrying in %.1fs: %s", pause, exc)
                self._stopping.wait(pause)
                continue
            failures = 0
            if leases and not self._accept(leases):
                # Every lease went back (a runner or resources we lack): the server would
                # hand them straight back, so pause, growing, within the idle deadline.
                refused += 1
                pause = min(MAX_REFUSED_PAUSE, MIN_CLAIM_GAP * 2 ** min(refused, 6))
                if cfg.exit_when_idle is not None:
                    pause = min(pause, cfg.exit_when_idle - idle_for)
                self._pause_unless_a_run_ends(pause, ended)
            elif leases:
                refused = 0
            elif cfg.poll_wait < MIN_CLAIM_GAP:
                # Without a long poll, empty claims must not hammer the server.
                gap = MIN_CLAIM_GAP - wait
                if cfg.exit_when_idle is not None:
                    gap = min(gap, cfg.exit_when_idle - idle_for - wait)
                self._stopping.wait(max(0.0, gap))

    def _accept(self, leases: list[wire.Lease]) -> int:
        """Start an attempt for each lease this agent can run, give the others back; how
        many it kept."""
        plans = [(lease, plan(lease, self.runners, self.allocator)) for lease in leases]
        kept = [(lease, p) for lease, p in plans if p.refusal is None]
        with self._cond:
            late = self._stopped()
            if not late and kept:
                for lease, p in kept:
                    attempt = Attempt(lease, self._context, self._attempt_ended, p)
                    self._attempts[lease.run_id] = attempt
                    attempt.thread.start()  # under the lock, so a shutdown can join it
                self._last_busy = time.monotonic()
        if late:
            log.info("releasing %d lease(s) that arrived during shutdown", len(leases))
            for lease in leases:
                release(self.client, lease)
            return 0
        for lease, p in plans:
            if p.refusal is not None:
                log.warning("giving back %s (run %d): %s", lease.key, lease.run_id, p.refusal)
                release(self.client, lease, f"agent {self.name}: {p.refusal}")
                self._count("refused")
        if kept:
            shown = ", ".join(f"{lease.key} (run {lease.run_id})" for lease, _ in kept[:8])
            more = f" and {len(kept) - 8} more" if len(kept) > 8 else ""
            log.info("claimed %d: %s%s", len(kept), shown, more)
        return len(kept)

    def _pause_unless_a_run_ends(self, seconds: float, ended: int) -> None:
        """Wait `seconds`, less if the agent stops or a run ends after `ended` runs had
        (a freed slot may claim what came behind the refused records)."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._stopped() and self._ended == ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, CHECK_EVERY))

    def _attempt_ended(self, attempt: Attempt) -> None:
        with self._cond:
            self._ended += 1
            self._attempts.pop(attempt.lease.run_id, None)
            self._last_busy = time.monotonic()
            self._cond.notify_all()

    # --- heartbeat callbacks -------------------------------------------------------------

    def _held_run_ids(self) -> list[int]:
        with self._cond:
            return list(self._attempts)

    def _on_cancel(self, run_id: int) -> None:
        self._abort(run_id, "cancelled")

    def _on_lost(self, run_id: int) -> None:
        self._abort(run_id, "lost")

    def _abort(self, run_id: int, reason: str) -> None:
        with self._cond:
            attempt = self._attempts.get(run_id)
        if attempt is not None and attempt.request_abort(reason):
            log.info("%s %s: stopping it", reason, attempt.label())


def install_signal_handlers(agent: Agent) -> None:
    """Route SIGTERM and SIGINT to `agent.stop()`; call it from the main thread."""

    def handle(signum: int, frame: object) -> None:
        agent.stop(f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
