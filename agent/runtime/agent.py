"""The agent: register, claim leases, run them, and shut down cleanly.

Threads: the caller's thread runs `Agent.run()`, watches the walltime and the disk and
otherwise only waits for a stop (so it stays free to take signals); one claim thread
(`claims.py`) long-polls for all free places at once; each lease runs on its own `Attempt`
thread; the heartbeat thread renews every lease in one request; the outbox thread delivers
final reports, also after the server was away.

Two ways to stop, `stop()` and `drain()`: see `stopping.py`.

Each claim says what this agent can take (runners, free share of cores, GPUs and memory,
filters, walltime left); a lease it cannot run all the same is given back (`claims.py`). A
runner that keeps failing to start commands is dropped from the claims (`Runners.failed`).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from farmhand import wire
from farmhand.client import FarmhandClient, FarmhandError
from farmhand.client.retry import retry_unavailable
from farmhand.runtime.attempt import CHECK_EVERY, Attempt, Context, describe_exit
from farmhand.runtime.claims import ClaimLoop
from farmhand.runtime.config import AgentConfig
from farmhand.runtime.context import StopState
from farmhand.runtime.files.stage_in import SnapshotSettings
from farmhand.runtime.heartbeat import HeartbeatThread
from farmhand.runtime.intake import Intake
from farmhand.runtime.outbox import Outbox
from farmhand.runtime.resources.allocation import Allocator
from farmhand.runtime.resources.diskguard import DiskGuard
from farmhand.runtime.resources.node import detect
from farmhand.runtime.resources.prefetch import Prefetch
from farmhand.runtime.resources.slots import Slots
from farmhand.runtime.resources.walltime import Walltime, describe
from farmhand.runtime.runners import definitions
from farmhand.runtime.starts import Starts
from farmhand.runtime.stopping import SHUTDOWN_CALL_TIMEOUT, end_attempts, install_signal_handlers
from farmhand.runtime.tally import Tally

__all__ = ["Agent", "AgentConfig", "describe_exit", "install_signal_handlers"]  # config re-exported

log = logging.getLogger("farmhand.agent")

#: How often the main thread measures the disk (and asks whether the walltime moved).
WATCH_EVERY = 2.0
#: Lease TTLs since its last claim went out within which an agent that holds no lease
#: skips its heartbeats (when the server counts claims as heartbeats).
CLAIMS_KEEP_ALIVE = 0.45


class Agent(Intake):
    """A farmhand agent: `run()` works until `stop()` (or idleness) and returns 0."""

    def __init__(self, config: AgentConfig, client: FarmhandClient | None = None):
        config.check()
        self.config = config
        self.name = config.name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = client if client is not None else FarmhandClient(config.server, config.token)
        self._owns_client = client is None
        self.agent_id: int | None = None
        self.lease_ttl: float | None = None
        self.claims_keep_alive = False  # the server counts claims as heartbeats
        self.claimer: ClaimLoop | None = None
        self.exit_status = 0
        self.tally = Tally()
        self.runners = config.runners or definitions.builtin()
        self.allocator = Allocator(config.resources or detect(), config.slots)
        self.prefetch = Prefetch(config.prefetch, config.slots)
        workdir = Path(config.workdir).resolve()
        self.walltime = Walltime(None, config.walltime_margin, "not yet known")
        self.disk = DiskGuard(workdir, config.disk_limit)
        self.outbox = Outbox(config.outbox_dir.resolve(), self.client, self._report_settled)
        self.heartbeat: HeartbeatThread | None = None
        self.paused: str | None = None  #: why the agent claims nothing now
        self._cond = threading.Condition()
        self._attempts: dict[int, Attempt] = {}
        self._last_busy = time.monotonic()
        self._stop = StopState()
        self.starts = Starts(self.client)
        self._context = Context(
            client=self.client,
            workdir=workdir,
            agent_name=self.name,
            term_grace=config.term_grace,
            report_deadline=config.report_deadline,
            stop=self._stop,
            count=self.tally.count,
            runners=self.runners,
            allocator=self.allocator,
            outbox=self.outbox,
            snapshots=SnapshotSettings.of(config, workdir, self.client),
            starts=self.starts,
            slots=Slots(config.slots),
            run_umask=config.run_umask,
            on_runner_broken=self._runner_broken,
        )

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Register, work until stopped (or idle), shut down cleanly; returns 0 (1 if the
        server rejected this agent). Registration errors propagate as `FarmhandError`."""
        if self._stop.started:
            raise RuntimeError("an Agent runs once; create a new one")
        self._stop.started = True
        if self._stop.requested:
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
            unneeded=self._beat_unneeded,
        )
        claimer = threading.Thread(target=self._claim_loop, name="farmhand-claim", daemon=True)
        self.outbox.start()
        self.starts.start()
        heartbeat.start()
        claimer.start()
        try:
            watched = 0.0
            while not self._stop.requested:
                self._stop.wake.wait(CHECK_EVERY)
                self._stop.wake.clear()
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
        if self._stop.requested:
            self._stop.kill_now = True  # a shutdown not yet begun will use no grace
            if self._stop.began.is_set():
                for attempt in list(self._attempts.values()):
                    attempt.kill()
            return
        self._request_stop(reason)

    @property
    def stop_state(self) -> StopState:
        """Where this agent's stop stands (the signal handlers report to it)."""
        return self._stop

    def drain(self, reason: str = "walltime drain") -> None:
        """Begin the walltime drain: claim nothing more, send running commands the checkpoint
        signal, give them `checkpoint_grace` seconds, then stop like `stop()`. Does nothing
        once a stop has begun. Safe in a signal handler."""
        if self._stop.requested:
            return
        self._stop.draining = True
        self._request_stop(reason)

    def _request_stop(self, reason: str) -> None:
        """Begin a graceful shutdown unless one is already requested (never escalates)."""
        self._stop.request(reason)

    @property
    def stopping(self) -> bool:
        """Whether the shutdown has begun (claims stopped, running commands being ended)."""
        return self._stop.began.is_set()

    @property
    def draining(self) -> bool:
        """Whether the stop is a walltime drain (checkpoint first)."""
        return self._stop.draining

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
            broken_runners=self.runners.broken(),
        )

    def _prepare(self) -> None:
        cfg = self.config
        self._context.workdir.mkdir(parents=True, exist_ok=True)
        self.outbox.open()
        self.walltime = Walltime.discover(
            walltime=cfg.walltime, margin=cfg.walltime_margin, environ=os.environ
        )
        self.paused = self.disk.check()  # before the first claim, not a watch later
        body = wire.AgentRegister(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=cfg.slots,
            runners=self.runners.offered(),
            resources=self.allocator.total.to_wire(),
            labels=batch_job_labels(os.environ),
        )
        # A server restarting, or a login node's network blip, must not end a batch job's
        # agent at once: registration is retried (with backoff, saying so) for a while.
        answer = retry_unavailable(
            lambda: self.client.register(body),
            what=f"registering with {self.client.server} (for up to {cfg.connect_timeout:g}s)",
            deadline=cfg.connect_timeout,
            interrupted=self._stop.began,
        )
        self.agent_id, self.lease_ttl = answer.agent.id, answer.lease_ttl
        self.claims_keep_alive = answer.claims_keep_alive
        slots = f"{cfg.slots} slot(s), prefetch {self.prefetch.describe()}"
        log.info(
            "agent %s registered as agent %d at %s: %s, leases last %gs, work in %s; %s",
            *(self.name, self.agent_id, self.client.server, slots, self.lease_ttl),
            *(self._context.workdir, self.walltime.describe()),
        )
        offered = ", ".join(self.runners.offered())
        log.info("runners: %s; resources: %s", offered, self.allocator.total.describe())
        if self.outbox.inherited:
            log.info(
                "delivering %d report(s) an earlier agent left in %s",
                *(self.outbox.inherited, self.outbox.directory),
            )

    def _reconnected(self) -> None:
        """The server answers again: deliver and claim now, not after the backoff pauses."""
        self.outbox.nudge()
        self._stop.claim_wake.set()

    def _runner_broken(self) -> None:
        """A runner is no longer offered: the server hears it now (`farmhand status`), and
        claims leave its records to other agents from the next one on."""
        if self.heartbeat is not None:
            self.heartbeat.poke()

    def _watch(self) -> None:
        """Measure the disk, ask whether the job's end moved; tell the server of a change."""
        self.walltime.maybe_refresh()
        paused = self.disk.check()
        flipped = (paused is None) != (self.paused is None)
        self.paused = paused
        if flipped:
            self._stop.claim_wake.set()
            if self.heartbeat is not None:
                self.heartbeat.poke()  # `farmhand ls agents` shows it now, not a beat later

    def _shutdown(self, heartbeat: HeartbeatThread) -> None:
        log.info("agent %s stopping: %s", self.name, self._stop.reason or "interrupted")
        try:  # first, so our own releases below do not wake a long poll that re-claims them
            self.client.drain(self.agent_id, timeout=SHUTDOWN_CALL_TIMEOUT)
        except FarmhandError as exc:
            log.warning("could not drain agent %d: %s", self.agent_id, exc)
        with self._cond:
            self._stop.began.set()
            self._stop.claim_wake.set()
            self._cond.notify_all()
        cfg = self.config
        ends = end_attempts(
            self.attempts(),
            draining=self.draining,
            checkpoint_signal=cfg.checkpoint_signal,
            checkpoint_grace=cfg.checkpoint_grace,
            term_grace=cfg.term_grace,
            report_deadline=cfg.report_deadline,
            walltime_left=self.walltime.left(),
            kill_now=lambda: self._stop.kill_now,
        )
        self.starts.close()
        timeout = max(SHUTDOWN_CALL_TIMEOUT, ends - time.monotonic())
        delivered = self.outbox.deliver_all(timeout, interrupted=lambda: self._stop.kill_now)
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
        if self._stop.last_to_finish():
            self._close_client()

    def _close_client(self) -> None:
        if self._owns_client:
            self.client.close()

    # --- heartbeat callbacks -------------------------------------------------------------

    def _beat_unneeded(self) -> bool:
        """A beat on the schedule would tell the server nothing: it counts this agent's
        claims as heartbeats, the agent holds no lease, and its last claim went out less
        than `CLAIMS_KEEP_ALIVE` lease TTLs ago. Then `last_heartbeat` on the server never
        lags by a TTL (that window + a beat interval, a third, + the server's delay in
        writing claims down, at most a sixth), and idle agents cost one request per poll."""
        sent = self.claimer.sent_at if self.claimer is not None else None
        if not self.claims_keep_alive or sent is None or self.lease_ttl is None:
            return False
        recent = time.monotonic() - sent < CLAIMS_KEEP_ALIVE * self.lease_ttl
        return recent and not self._held_run_ids()

    def _held_run_ids(self) -> list[int]:
        with self._cond:
            held = list(self._attempts)
        return held + self.outbox.pending_run_ids()  # reports waiting keep their leases

    def _abort(self, run_id: int, reason: str) -> None:
        with self._cond:
            attempt = self._attempts.get(run_id)
        if attempt is not None and attempt.request_abort(reason):
            log.info("%s %s: stopping it", reason, attempt.label())


#: The environment variable naming the batch job an agent runs in → its registration label
#: (how `farmhand ls allocations` finds the agents each autoscaled job started).
JOB_VARIABLES = {"SLURM_JOB_ID": "slurm_job", "PBS_JOBID": "pbs_job"}


def batch_job_labels(environ: Mapping[str, str]) -> dict[str, str]:
    """`{"slurm_job": "123"}` inside a Slurm job (likewise PBS); empty elsewhere."""
    return {label: environ[name] for name, label in JOB_VARIABLES.items() if environ.get(name)}
