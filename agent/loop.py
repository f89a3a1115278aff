"""The agent: register, claim leases, run them, and shut down cleanly.

Threads: the caller's thread runs `Agent.run()`, watches the walltime and the disk and
otherwise only waits for a stop (so it stays free to take signals); one claim thread
(`claimer.py`) long-polls for all free places at once; each lease runs on its own `Attempt`
thread; the heartbeat thread renews every lease in one request; the outbox thread delivers
final reports, also after the server was away.

Two ways to stop: `stop()` (SIGTERM, SIGINT) terminates running commands at once and gives
their records back; `drain()` (SIGUSR1, or `--walltime-margin` before the batch job ends)
first sends each running command the checkpoint signal and waits `checkpoint_grace`.

Each claim says what this agent can take: its runners, its free share of cores, GPUs and
memory (`allocation.py`), its campaign and dataset filters and its walltime left; a lease it
cannot run all the same (a runner definition changed meanwhile) is given back (`placement.py`).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from farmhand.agent import wire
from farmhand.agent.allocation import Allocator
from farmhand.agent.attempt import CHECK_EVERY, Attempt, Context, describe_exit, release
from farmhand.agent.claimer import ClaimLoop, describe_leases, sort_leases
from farmhand.agent.client import FarmhandClient, FarmhandError
from farmhand.agent.config import AgentConfig
from farmhand.agent.diskguard import DiskGuard
from farmhand.agent.heartbeat import HeartbeatThread
from farmhand.agent.inputs import CACHE_DIR, SnapshotCache
from farmhand.agent.outbox import Entry, Outbox
from farmhand.agent.placement import plan
from farmhand.agent.resources import detect
from farmhand.agent.runners import definitions
from farmhand.agent.slots import Slots
from farmhand.agent.stage_in import SnapshotSettings
from farmhand.agent.status import Tally
from farmhand.agent.walltime import Walltime, checkpoint_all, describe

__all__ = ["Agent", "AgentConfig", "describe_exit", "install_signal_handlers"]  # config re-exported

log = logging.getLogger("farmhand.agent")

#: Seconds, beyond the grace, that a shutdown waits for its runs to be released.
SHUTDOWN_SLACK = 5.0
#: Seconds a shutdown call (drain, deregister) may take against a hung server.
SHUTDOWN_CALL_TIMEOUT = 5.0
#: How often the main thread measures the disk (and asks whether the walltime moved).
WATCH_EVERY = 2.0


class Agent:
    """A farmhand agent: `run()` works until `stop()` (or idleness) and returns 0."""

    def __init__(self, config: AgentConfig, client: FarmhandClient | None = None):
        config.check()
        self.config = config
        self.name = config.name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = client if client is not None else FarmhandClient(config.server, config.token)
        self._owns_client = client is None
        self.agent_id: int | None = None
        self.lease_ttl: float | None = None
        self.exit_status = 0
        self.tally = Tally()
        self.runners = config.runners or definitions.builtin()
        self.allocator = Allocator(config.resources or detect(), config.slots)
        workdir = Path(config.workdir).resolve()
        self.walltime = Walltime(None, config.walltime_margin, "not yet known")
        self.disk = DiskGuard(workdir, config.disk_limit)
        self.outbox = Outbox(config.outbox_dir.resolve(), self.client, self._report_settled)
        self.heartbeat: HeartbeatThread | None = None
        self.paused: str | None = None  #: why the agent claims nothing now
        self._cond = threading.Condition()
        self._attempts: dict[int, Attempt] = {}
        self._last_busy = time.monotonic()
        self._stopping = threading.Event()  # shutdown began: claims stop, attempts abort
        self._wake = threading.Event()
        self._claim_wake = threading.Event()
        self._stop_requested = False  # plain attributes: stop() may run in a signal handler
        self._stop_reason = ""
        self._started = False
        self._claimer_done = False
        self._close_when_claimer_done = False
        self._context = Context(
            client=self.client,
            workdir=workdir,
            agent_name=self.name,
            term_grace=config.term_grace,
            report_deadline=config.report_deadline,
            stopping=self._stopping,
            count=self.tally.count,
            runners=self.runners,
            allocator=self.allocator,
            outbox=self.outbox,
            snapshots=SnapshotSettings(
                cache=SnapshotCache(workdir / CACHE_DIR, self.client, config.cache_limit),
                scratch=workdir / "tmp",
                max_extract_bytes=config.max_extract_bytes,
                max_extract_files=config.max_extract_files,
                checkpoint_interval=config.checkpoint_interval,
                keep_failed_workdir=config.keep_failed_workdir,
            ),
            slots=Slots(config.slots),
            run_umask=config.run_umask,
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
            self._prepare()
        except BaseException:
            self._close_client()
            raise
        assert self.agent_id is not None and self.lease_ttl is not None
        heartbeat = self.heartbeat = HeartbeatThread(
            self.client,
            self.agent_id,
            self.lease_ttl / 3,
            self._held_run_ids,
            functools.partial(self._abort, reason="cancelled"),
            functools.partial(self._abort, reason="lost"),
            status=self.status,
            on_reconnect=self._reconnected,
        )
        claimer = threading.Thread(target=self._claim_loop, name="farmhand-claim", daemon=True)
        self.outbox.start()
        heartbeat.start()
        claimer.start()
        try:
            watched = 0.0
            while not self._stop_requested:
                self._wake.wait(CHECK_EVERY)
                self._wake.clear()
                if time.monotonic() - watched >= WATCH_EVERY:
                    watched = time.monotonic()
                    self._watch()
                if self.walltime.drain_due():
                    self.drain(f"the walltime ends in {describe(self.walltime.left())}")
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

    def drain(self, reason: str = "walltime drain") -> None:
        """Begin the walltime drain: claim nothing more, send running commands the checkpoint
        signal, give them `checkpoint_grace` seconds, then stop like `stop()`. Does nothing
        once a stop has begun. Safe in a signal handler."""
        if self._stop_requested:
            return
        self._context.draining = True
        self._request_stop(reason)

    def _request_stop(self, reason: str) -> None:
        """Begin a graceful shutdown unless one is already requested (never escalates)."""
        if self._stop_requested:
            return
        self._stop_reason = reason or "stop requested"
        self._stop_requested = True
        self._context.stop_requested = True
        if threading.current_thread() is not threading.main_thread():
            # A signal handler runs on the main thread and may interrupt Event.wait while it
            # holds the event's lock; there, run() notices the flag within CHECK_EVERY.
            self._wake.set()
            self._claim_wake.set()

    @property
    def stopping(self) -> bool:
        """Whether the shutdown has begun (claims stopped, running commands being ended)."""
        return self._stopping.is_set()

    @property
    def draining(self) -> bool:
        """Whether the stop is a walltime drain (checkpoint first)."""
        return self._context.draining

    @property
    def counts(self) -> dict[str, int]:
        """Runs by outcome: done, failed, released, cancelled, lost, orphaned, refused."""
        return self.tally.counts

    @property
    def running(self) -> int:
        """How many attempts this agent is working on (queued prefetches included)."""
        with self._cond:
            return len(self._attempts)

    def attempts(self) -> list[Attempt]:
        """The attempts in progress, oldest first."""
        with self._cond:
            return sorted(self._attempts.values(), key=lambda a: a.began)

    def status(self) -> wire.AgentStatus:
        """What the heartbeat tells the server about this agent."""
        return wire.AgentStatus(
            paused=None if self.paused is None else self.paused[:500],  # long paths
            disk_used_percent=self.disk.used,
            walltime_left=self.walltime.left(),
            outbox=len(self.outbox),
        )

    def _prepare(self) -> None:
        cfg = self.config
        self._context.workdir.mkdir(parents=True, exist_ok=True)
        self.outbox.open()
        self.walltime = Walltime.discover(
            walltime=cfg.walltime, margin=cfg.walltime_margin, environ=os.environ
        )
        self.paused = self.disk.check()  # before the first claim, not a watch later
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
            "agent %s registered as agent %d at %s: %d slot(s)%s, leases last %gs, work in %s; %s",
            self.name,
            self.agent_id,
            self.client.server,
            cfg.slots,
            f" + {cfg.prefetch} prefetched" if cfg.prefetch else "",
            self.lease_ttl,
            self._context.workdir,
            self.walltime.describe(),
        )
        log.info(
            "runners: %s; resources: %s",
            ", ".join(self.runners.offered()),
            self.allocator.total.describe(),
        )
        if self.outbox.inherited:
            log.info(
                "delivering %d report(s) an earlier agent left in %s",
                self.outbox.inherited,
                self.outbox.directory,
            )

    def _reconnected(self) -> None:
        """The server answers again: deliver and claim now, not after the backoff pauses."""
        self.outbox.nudge()
        self._claim_wake.set()

    def _watch(self) -> None:
        """Measure the disk, ask whether the job's end moved; tell the server of a change."""
        self.walltime.maybe_refresh()
        paused = self.disk.check()
        flipped = (paused is None) != (self.paused is None)
        self.paused = paused
        if flipped:
            self._claim_wake.set()
            if self.heartbeat is not None:
                self.heartbeat.poke()  # `farmhand ls agents` shows it now, not a beat later

    def _shutdown(self, heartbeat: HeartbeatThread) -> None:
        log.info("agent %s stopping: %s", self.name, self._stop_reason or "interrupted")
        try:  # first, so our own releases below do not wake a long poll that re-claims them
            self.client.drain(self.agent_id, timeout=SHUTDOWN_CALL_TIMEOUT)
        except FarmhandError as exc:
            log.warning("could not drain agent %d: %s", self.agent_id, exc)
        with self._cond:
            self._stopping.set()
            self._claim_wake.set()
            self._cond.notify_all()
        if self.draining:
            cfg = self.config
            checkpoint_all(
                self.attempts(),
                cfg.checkpoint_signal,
                cfg.checkpoint_grace,
                interrupted=lambda: self._context.kill_now,
            )
        reason = "walltime" if self.draining else "shutdown"
        attempts = self.attempts()
        for attempt in attempts:  # each attempt's thread terminates and releases it
            attempt.request_abort(reason)
        timeout, left = self.config.report_deadline, self.walltime.left()
        if left is not None:  # leave a few seconds to exit before the batch system kills us
            timeout = min(timeout, max(SHUTDOWN_CALL_TIMEOUT, left - SHUTDOWN_SLACK))
        ends = time.monotonic() + timeout
        deadline = time.monotonic() + self.config.term_grace + SHUTDOWN_SLACK
        for attempt in attempts:
            attempt.thread.join(max(0.0, deadline - time.monotonic()))
        for attempt in attempts:  # archiving outputs or saving a checkpoint: worth a wait
            while (
                attempt.thread.is_alive()
                and attempt.phase in ("reporting", "saving")
                and not self._context.kill_now
                and time.monotonic() < ends
            ):
                attempt.thread.join(CHECK_EVERY)
        stuck = [attempt.label() for attempt in attempts if attempt.thread.is_alive()]
        if stuck:
            log.warning(
                "shutdown did not finish for %s; deregistering releases their leases",
                ", ".join(stuck),
            )
        timeout = max(SHUTDOWN_CALL_TIMEOUT, ends - time.monotonic())
        delivered = self.outbox.deliver_all(timeout, interrupted=lambda: self._context.kill_now)
        heartbeat.stop(timeout=1.0)
        self.outbox.stop()
        # Deregistering releases every lease the agent holds: not while results wait to be
        # delivered, but what waits may be releases only (a second stop cut delivery short).
        if delivered or self.outbox.only_releases():
            try:
                self.client.deregister(self.agent_id, timeout=SHUTDOWN_CALL_TIMEOUT)
            except FarmhandError as exc:
                log.warning("could not deregister agent %d: %s", self.agent_id, exc)
        log.info("agent %s stopped: %s", self.name, self.tally.summary())
        with self._cond:
            close_now = self._claimer_done
            self._close_when_claimer_done = not close_now
        if close_now:
            self._close_client()

    def _close_client(self) -> None:
        if self._owns_client:
            self.client.close()

    # --- claiming ------------------------------------------------------------------------

    def _stopped(self) -> bool:
        return self._stop_requested or self._stopping.is_set()

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
            runners=self.runners.offered(),
            free=self._free,
            room=self._room,
            accept=self._accept,
            paused=self._claim_pause,
            usable_time=self.walltime.usable,
            stop=self._claims_over,
            wake=self._claim_wake,
        )
        try:
            # What an earlier process left goes first, while its leases may still be live.
            self.outbox.flush(self.lease_ttl, interrupted=self._stopped)
            loop.run()
        except Exception:
            log.exception("the claim loop failed; stopping")
            self._claims_over("claim loop failed", True)
        finally:
            # An in-flight long poll may outlive run(); the client is closed by whichever
            # of the two finishes last.
            with self._cond:
                self._claimer_done = True
                close = self._close_when_claimer_done
            if close:
                self._close_client()

    def _claims_over(self, reason: str, failed: bool) -> None:
        if failed:
            self.exit_status = 1
        self._request_stop(reason)

    def _room(self) -> tuple[int, float] | None:
        """Block until a lease fits (slots + prefetch; without prefetch also some free
        cores); (free places, seconds idle)."""
        cfg = self.config
        capacity = cfg.slots + cfg.prefetch
        with self._cond:
            while not self._stopped() and (
                len(self._attempts) >= capacity
                or (not cfg.prefetch and not self.allocator.has_room())
            ):
                self._cond.wait(1.0)
            if self._stopped():
                return None
            # Reports not yet delivered may make records ready (a parent's completion): the
            # agent is idle only once nothing runs and nothing waits in its outbox.
            if self._attempts or len(self.outbox):
                self._last_busy = time.monotonic()
            return capacity - len(self._attempts), time.monotonic() - self._last_busy

    def _free(self) -> wire.Resources:
        """The resources a claim may ask for: the free share now; with prefetch, anything
        that fits the agent at all (a prefetched lease waits for its share as for its slot,
        in claim order)."""
        if self.config.prefetch:
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
                        lease, self._context, self._attempt_ended, plans[lease.run_id]
                    )
                    self._attempts[lease.run_id] = attempt
                    attempt.thread.start()  # under the lock, so a shutdown can join it
                    self._last_busy = time.monotonic()
        if late:
            log.info("releasing %d lease(s) that arrived during shutdown", len(leases))
            for lease in leases:
                release(self.outbox, lease, "agent shutting down")
            return 0, 0
        for lease in refused:  # a runner or resources this agent lacks: no attempt spent
            why = plans[lease.run_id].refusal
            log.warning("giving back %s (run %d): %s", lease.key, lease.run_id, why)
            release(self.outbox, lease, f"agent {self.name}: {why}")
            self.tally.count("refused")
        for lease, why in too_long + surplus:  # a release spends no attempt
            log.info("released %s (run %d): %s", lease.key, lease.run_id, why)
            release(self.outbox, lease, why)
            self.tally.count("released")
        if fitting:
            log.info("claimed %d: %s", len(fitting), describe_leases(fitting))
        return len(fitting), len(too_long)

    def _report_settled(self, entry: Entry, ack: wire.RunAck | None, problem: str | None) -> None:
        """The outbox settled a report: count it; the idle clock starts again from now."""
        self.tally.delivered(entry, ack, problem)
        with self._cond:
            self._last_busy = time.monotonic()

    def _attempt_ended(self, attempt: Attempt) -> None:
        with self._cond:
            self._attempts.pop(attempt.lease.run_id, None)
            self._last_busy = time.monotonic()
            self._cond.notify_all()
        # Its share is free again: a claim pausing after records it had to give back (or
        # found nothing that fitted the share then) may find something now.
        self._claim_wake.set()

    # --- heartbeat callbacks -------------------------------------------------------------

    def _held_run_ids(self) -> list[int]:
        with self._cond:
            held = list(self._attempts)
        return held + self.outbox.pending_run_ids()  # reports waiting keep their leases

    def _abort(self, run_id: int, reason: str) -> None:
        with self._cond:
            attempt = self._attempts.get(run_id)
        if attempt is not None and attempt.request_abort(reason):
            log.info("%s %s: stopping it", reason, attempt.label())


def install_signal_handlers(agent: Agent) -> None:
    """SIGTERM and SIGINT stop the agent (a second one kills the commands at once); SIGUSR1
    starts the walltime drain. Call it from the main thread."""

    def handle(signum: int, frame: object) -> None:
        agent.stop(f"received {signal.Signals(signum).name}")

    def handle_drain(signum: int, frame: object) -> None:
        agent.drain(f"received {signal.Signals(signum).name}: walltime drain")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGUSR1, handle_drain)
