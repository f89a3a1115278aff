"""One attempt of one record on this agent: stage it, run its command, report the outcome.

Each attempt runs on its own thread, which alone drives its command: a cancel, a lost lease
or a shutdown only sets `abort`, and the thread terminates the command's process group,
removes the partial run directory and (on shutdown) gives the lease back. A command that ends
once the agent was asked to stop or drain is given back too, not reported: the batch system
signals every process of a job step, so such an exit is the stop's doing, not a result.

Staging comes first (so prefetched leases download while the slots are busy), then two waits
in this order: a command slot, then a share of cores, GPUs and memory; the order keeps them
deadlock-free (docs/architecture.md, "An attempt on the agent"). Final reports go through
the agent's durable outbox, so a result survives a server that cannot be reached.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from farmhand import wire
from farmhand.client import ApiError, ServerUnavailable
from farmhand.client.retry import retry_unavailable
from farmhand.runtime.context import (
    RELEASE_REASONS,
    Context,
    describe_exit,
    digest,
    release,
    run_environment,
    run_timeout,
)
from farmhand.runtime.files.cache import InputError
from farmhand.runtime.files.checkpoints import Checkpointer
from farmhand.runtime.files.parents import write_parents
from farmhand.runtime.files.rundirs import (
    STDERR_FILE,
    STDOUT_FILE,
    make_run_dir,
    read_results,
    read_tail,
    write_params,
)
from farmhand.runtime.files.stage_in import Prepared, stage_snapshots
from farmhand.runtime.outcomes import Outcomes
from farmhand.runtime.resources.allocation import Grant
from farmhand.runtime.resources.placement import Plan
from farmhand.runtime.runners import DEFAULT_RUNNER, Launch, Runner, RunnerFailure, RunningProcess
from farmhand.runtime.starts import Ticket

__all__ = ["RELEASE_REASONS", "Attempt", "Context", "describe_exit", "release"]  # re-exported

log = logging.getLogger("farmhand.agent")

#: How often an attempt's thread looks for an abort while its command runs.
CHECK_EVERY = 0.2
T = TypeVar("T")


class Attempt(Outcomes):
    """One lease being worked on. `phase` goes staging → (queued →) running → reporting."""

    def __init__(
        self,
        lease: wire.Lease,
        context: Context,
        on_exit: Callable[[Attempt], None],
        plan: Plan,
        on_command_end: Callable[[Attempt], None] | None = None,
    ):
        self.lease = lease
        self.context = context
        self.on_exit = on_exit
        self.on_command_end = on_command_end  # its slot and share are free again
        self.plan = plan
        self.grant: Grant | None = None  # this run's share of the agent's resources
        self.phase = "staging"
        self.abort: str | None = None  # "shutdown", "walltime", "cancelled" or "lost"
        self.checkpointed = False  # the walltime drain signalled the running command
        self.handle: RunningProcess | None = None
        self.run_dir: Path | None = None
        self.prepared: Prepared | None = None  # what staging placed in the run directory
        self.checkpointer: Checkpointer | None = None
        self.timeout: float | None = None  # run_args.timeout, seconds from the command's start
        self.start_ticket: Ticket | None = None  # the server's answer to the run's start
        self.started_at: datetime | None = None  # a start the report carries (not sent)
        self.began = time.monotonic()
        self.command_began: float | None = None  # monotonic, once the command started
        self._lock = threading.Lock()
        self.thread = context.crew.task(self._work, name=f"farmhand-run-{lease.run_id}")
        if context.slots is not None:
            context.slots.enqueue(self)  # attempts are made in claim order

    def label(self, *details: str) -> str:
        """`relax-017 (run 42, exit 0, 1.3s)` for logs."""
        return f"{self.lease.key} ({', '.join((f'run {self.lease.run_id}', *details))})"

    def request_abort(self, reason: str) -> bool:
        """Ask the thread to stop the command; False if it is already reporting or aborted."""
        with self._lock:
            if self.phase == "reporting" or self.abort is not None:
                return False
            self.abort = reason
        return True

    def checkpoint(self, signum: int) -> bool:
        """The walltime drain: send `signum` to a running command so it can checkpoint (True),
        or abort an attempt whose command has not started (False). Either way the record
        is given back. Nothing happens to an attempt already reporting."""
        with self._lock:
            if self.phase == "reporting" or self.abort is not None:
                return False
            handle = self.handle
            if self.phase != "running" or handle is None:
                self.abort = "walltime"
                return False
            if handle.poll() is not None:
                return False  # it finished just now: its result is reported as usual
            self.checkpointed = True
        handle.signal_group(signum)
        return True

    def kill(self) -> None:
        """SIGKILL the command's group now (safe in a signal handler: no locks)."""
        handle = self.handle
        if handle is not None:
            handle.kill()

    # --- the thread ----------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._execute()
        except Exception as exc:
            log.exception("agent error in %s", self.label())
            try:
                if self.handle is not None:
                    self.handle.terminate(self.context.term_grace)
                self._fail(f"agent error: {type(exc).__name__}: {exc}", None)
            except Exception:
                log.exception("could not report the agent error in %s", self.label())
        finally:
            self._free_share()
            self.on_exit(self)

    def _free_share(self) -> None:
        """Give back the command slot and the share of cores, GPUs and memory (once)."""
        grant, self.grant = self.grant, None
        if grant is not None:
            self.context.allocator.release(grant)
        if self.context.slots is not None:
            self.context.slots.done(self)

    def _execute(self) -> None:
        lease, ctx = self.lease, self.context
        if ctx.stop.began.is_set():
            return self._drop("shutdown")
        if self.plan.error is not None:
            return self._fail(self.plan.error, None)
        try:
            self.run_dir = make_run_dir(ctx.workdir, lease.campaign_id, lease.key, lease.run_id)
            write_parents(self.run_dir, lease.parents)
            write_params(self.run_dir, lease.params)
        except (OSError, ValueError) as exc:
            return self._orphan(f"cannot stage the run directory: {exc}")
        if not self._stage_snapshots():
            return None
        # A slot first, then the share: see the module docstring for why this order.
        if not self._wait_for_slot() or not self._acquire():
            return self._drop(self.abort or "shutdown")
        self.start_ticket = ctx.starts.send(lease)  # sent in a batch; the command goes now
        try:
            assert self.grant is not None and self.run_dir is not None
            run_env = run_environment(
                self.lease,
                self.run_dir,
                self.grant.environment(gpus_managed=ctx.allocator.gpus_managed),
                agent_name=ctx.agent_name,
                prepared=self.prepared,
            )
            self.timeout = run_timeout(self.lease.run_args)
        except ValueError as exc:
            return self._fail(str(exc), None)
        assert self.plan.runner is not None  # refused plans never become attempts
        try:
            start_error = self._start(self.plan.runner, run_env)
        except RunnerFailure as exc:
            if self.start_ticket is not None:  # not sent yet: it need not be (sent: harmless)
                ctx.starts.withdraw(self.start_ticket)
            return self._runner_failed(self.runner_name, str(exc))
        if self.abort is not None:
            return self._drop(self.abort)
        if start_error is not None:
            return self._fail(start_error, None)
        if self.checkpointer is not None:
            self.checkpointer.start()
        self._wait_and_report()

    @property
    def runner_name(self) -> str:
        """The name of the runner this attempt's record asks for."""
        return str(self.lease.run_args.get("runner", DEFAULT_RUNNER))

    def _start_confirmed(self) -> bool:
        """Wait for the server's answer to this run's start (never reported before it). A
        refusal means the lease is gone: the result is not ours to report, so the attempt
        is dropped, as a refused start used to stop the command before it ran."""
        ticket = self.start_ticket
        if ticket is None:
            return True
        if self.context.starts.withdraw(ticket):  # not sent yet: it goes with the report
            self.started_at = ticket.started_at
            return True
        ticket.wait()
        if ticket.refused is None:
            return True
        log.warning("the server refused the start of %s: %s", self.label(), ticket.refused)
        self._drop(self.abort or "lost")
        return False

    def _stage_snapshots(self) -> bool:
        """Inputs, parents' archives, a checkpoint; False when the attempt ended here."""
        lease, ctx, run_dir = self.lease, self.context, self.run_dir
        assert run_dir is not None
        try:
            self.prepared = stage_snapshots(ctx.client, lease, run_dir, ctx.snapshots, self._retry)
        except ValueError as exc:  # run_args that make no sense: the attempt fails
            self._fail(str(exc), None)
            return False
        except InputError as exc:
            self._orphan(str(exc))
            return False
        except OSError as exc:
            self._orphan(f"cannot stage the run directory: {exc.strerror or exc}")
            return False
        except (ServerUnavailable, ApiError) as exc:
            log.warning("cannot stage %s: %s", self.label(), exc)
            self._drop(self.abort or "lost")
            return False
        self.checkpointer = Checkpointer(
            ctx.client,
            lease,
            self.prepared.checkpoint_dir,
            ctx.snapshots.scratch,
            self.prepared.checkpoint_interval,
            empty=self.prepared.checkpoint_empty,
        )
        if self.abort is not None or ctx.stop.began.is_set():
            self._drop(self.abort or "shutdown")
            return False
        return True

    def _retry(self, call: Callable[[], T], what: str) -> T:
        """`call()`, retried while the server is away, until the attempt is aborted."""
        return retry_unavailable(
            call,
            what=f"{what} {self.label()}",
            deadline=self.context.report_deadline,
            interrupted=self.context.stop.began,
            give_up=lambda: self.abort is not None,
        )

    def _wait_for_slot(self) -> bool:
        """A prefetched lease waits here, staged, until a command slot frees; False if it was
        aborted meanwhile."""
        slots = self.context.slots
        if slots is None:
            return True
        if not slots.take(self, timeout=0):
            self.phase = "queued"
            while not slots.take(self, timeout=CHECK_EVERY):
                if self.abort is not None or self.context.stop.began.is_set():
                    return False
        with self._lock:
            if self.phase == "queued":
                self.phase = "staging"
        return self.abort is None

    def _acquire(self) -> bool:
        """Wait for this run's share of cores, GPUs and memory; False if aborted first."""
        allocator, need = self.context.allocator, self.plan.need
        stopping = self.context.stop.began
        shortfall = allocator.shortfall(need)
        if shortfall is not None:
            log.info("%s waits: %s", self.label(), shortfall)
        self.grant = allocator.acquire(need, lambda: self.abort is not None or stopping.is_set())
        return self.grant is not None and self.abort is None

    def _start(self, runner: Runner, run_env: dict[str, str]) -> str | None:
        """Start the command unless aborted meanwhile; an error message if it cannot start."""
        run_dir, lease = self.run_dir, self.lease
        assert run_dir is not None
        launch = Launch(
            command=lease.command,
            run_dir=run_dir,
            stdout=run_dir / STDOUT_FILE,
            stderr=run_dir / STDERR_FILE,
            base_env=self.context.base_env,
            run_env=run_env,
            name=f"farmhand-{lease.run_id}-{digest(lease.token)}",
            run_args=lease.run_args,
            umask=self.context.run_umask,
        )
        with self._lock:
            if self.abort is not None:
                return None
            try:
                self.handle = runner.start(launch)
                self.command_began = time.monotonic()
            except RunnerFailure:
                self.phase = "reporting"
                raise
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                self.phase = "reporting"
                return f"cannot start the command: {exc}"
            self.phase = "running"
            return None

    def _wait_and_report(self) -> None:
        handle, run_dir, grace = self.handle, self.run_dir, self.context.term_grace
        assert handle is not None and run_dir is not None
        code = None
        ends = None if self.timeout is None else time.monotonic() + self.timeout
        while code is None and self.abort is None:
            left = CHECK_EVERY if ends is None else min(CHECK_EVERY, ends - time.monotonic())
            if left <= 0:
                break  # timed out: the command is stopped below
            code = handle.wait(left)
            if code is None and self.checkpointer is not None:
                self.checkpointer.tick()
        # A stop signal the command ended on may not have reached the agent's handler yet.
        self.context.stop.await_signals()
        with self._lock:
            if self.abort is None and (self.context.stop.requested or self.checkpointed):
                # It ended on the stop's signal (ours, or the batch system's), not by itself.
                draining = self.checkpointed or self.context.stop.draining
                self.abort = "walltime" if draining else "shutdown"
            if self.abort is None:
                self.phase = "reporting"
        if self.abort is not None:
            handle.terminate(0.0 if self.context.stop.kill_now else grace)
            return self._drop(self.abort)
        timed_out = code is None
        if timed_out:
            code = handle.terminate(grace)
        else:
            handle.reap_strays(grace)
        # The command is over: reading its results, packing its archive and saving its last
        # checkpoint need neither a slot nor a share, so the next command starts now.
        self._free_share()
        if self.on_command_end is not None:
            self.on_command_end(self)
        if not self._start_confirmed():
            return None
        tails = {
            "stdout_tail": read_tail(run_dir / STDOUT_FILE),
            "stderr_tail": read_tail(run_dir / STDERR_FILE),
        }
        engine_error = None if timed_out else handle.engine_error(code)
        if engine_error is not None:  # the command never ran: the runner is at fault
            said = tails["stderr_tail"].strip().splitlines()[-1:]  # the engine's own words
            return self._runner_failed(self.runner_name, ": ".join([engine_error, *said])[:1000])
        self.context.runners.worked(self.runner_name)
        if self.checkpointer is not None:
            self.checkpointer.stop()
        document, results_error = read_results(run_dir)
        if timed_out:
            self._fail(f"timed out after {self.timeout:g} s", code, ran=True, **tails)
        elif code == 0 and results_error is None:
            self._report(
                "complete",
                wire.RunComplete(token=self.lease.token, exit_code=0, result=document, **tails),
                ran=True,
            )
        else:
            error = describe_exit(code) if code != 0 else results_error
            assert error is not None
            self._fail(error, code, ran=True, **tails)
