"""One attempt of one record on this agent: stage it, run its command, report the outcome.

Each attempt runs on its own thread, which alone drives its command: a cancel, a lost lease
or a shutdown only sets `abort`, and the thread terminates the command's process group,
removes the partial run directory and (on shutdown) gives the lease back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from farmhand.agent import run_args, wire
from farmhand.agent.allocation import Allocator, Grant
from farmhand.agent.client import (
    ApiError,
    Conflict,
    FarmhandClient,
    FarmhandError,
    ServerUnavailable,
)
from farmhand.agent.orphans import report_orphan
from farmhand.agent.parents import write_parents
from farmhand.agent.placement import Plan
from farmhand.agent.retry import is_transient, retry_unavailable
from farmhand.agent.runners import Launch, Runner, RunningProcess
from farmhand.agent.runners.definitions import Runners
from farmhand.agent.staging import (
    STDERR_FILE,
    STDOUT_FILE,
    make_run_dir,
    read_results,
    read_tail,
    remove_run_dir,
)

__all__ = ["RELEASE_REASON", "Attempt", "Context", "describe_exit", "release"]

log = logging.getLogger("farmhand.agent")

RELEASE_REASON = "agent shutting down"
#: How often an attempt's thread looks for an abort while its command runs.
CHECK_EVERY = 0.2
#: Secrets of the agent itself that a user's command must not inherit.
PRIVATE_ENV = ("FARMHAND_TOKEN", "FARMHAND_ADMIN_TOKEN")


def describe_exit(code: int) -> str:
    """A failed run's error for an exit status: "exit code 3", "killed by signal SIGKILL"."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _digest(token: str) -> str:
    """Eight hex digits that tell leases apart without revealing the token (container
    names are visible to every user of the node)."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def release(client: FarmhandClient, lease: wire.Lease, reason: str = RELEASE_REASON) -> None:
    """Give a lease back without spending its attempt; a lease already gone is fine."""
    try:
        client.release(lease.run_id, lease.token, reason=reason[:1024], timeout=5.0)
    except Conflict:
        pass  # already released (deregistration) or ended: nothing to give back
    except FarmhandError as exc:
        log.warning("could not release %s (run %d): %s", lease.key, lease.run_id, exc)


@dataclass
class Context:
    """What every attempt of one agent shares with it."""

    client: FarmhandClient
    workdir: Path
    agent_name: str
    term_grace: float
    report_deadline: float
    stopping: threading.Event
    count: Callable[[str], None]  # "done", "failed", "released", "cancelled", "lost", "orphaned"
    runners: Runners
    allocator: Allocator
    kill_now: bool = False  # a second stop(): no grace any more
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))


class Attempt:
    """One lease being worked on. `phase` goes staging → running → reporting."""

    def __init__(
        self,
        lease: wire.Lease,
        context: Context,
        on_exit: Callable[[Attempt], None],
        plan: Plan,
    ):
        self.lease = lease
        self.context = context
        self.on_exit = on_exit
        self.plan = plan
        self.grant: Grant | None = None  # this run's share of the agent's resources
        self.phase = "staging"
        self.abort: str | None = None  # "shutdown", "cancelled" or "lost"
        self.handle: RunningProcess | None = None
        self.run_dir: Path | None = None
        self.timeout: float | None = None  # run_args.timeout, seconds from the command's start
        self.began = time.monotonic()
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._work, daemon=True, name=f"farmhand-run-{lease.run_id}"
        )

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
            if self.grant is not None:
                self.context.allocator.release(self.grant)
            self.on_exit(self)

    def _execute(self) -> None:
        lease, ctx = self.lease, self.context
        if ctx.stopping.is_set():
            return self._drop("shutdown")
        if self.plan.error is not None:
            return self._fail(self.plan.error, None)
        if not self._acquire():
            return self._drop(self.abort or "shutdown")
        try:
            self.run_dir = make_run_dir(ctx.workdir, lease.campaign_id, lease.key, lease.run_id)
            write_parents(self.run_dir, lease.parents)
        except (OSError, ValueError) as exc:
            return self._orphan(f"cannot stage the run directory: {exc}")
        try:
            retry_unavailable(
                lambda: ctx.client.start(lease.run_id, lease.token),
                what=f"start {self.label()}",
                deadline=ctx.report_deadline,
                interrupted=ctx.stopping,
                give_up=lambda: self.abort is not None,
            )
        except (ServerUnavailable, ApiError) as exc:
            log.warning("cannot start %s: %s", self.label(), exc)
            return self._drop(self.abort or "lost")
        try:
            run_env = self._run_environment()
            self.timeout = run_args.timeout(self.lease.run_args)
        except ValueError as exc:
            return self._fail(str(exc), None)
        assert self.plan.runner is not None  # refused plans never become attempts
        start_error = self._start(self.plan.runner, run_env)
        if self.abort is not None:
            return self._drop(self.abort)
        if start_error is not None:
            return self._fail(start_error, None)
        self._wait_and_report()

    def _acquire(self) -> bool:
        """Wait for this run's share of cores, GPUs and memory; False if aborted first."""
        allocator, need = self.context.allocator, self.plan.need
        stopping = self.context.stopping
        shortfall = allocator.shortfall(need)
        if shortfall is not None:
            log.info("%s waits: %s", self.label(), shortfall)
        self.grant = allocator.acquire(need, lambda: self.abort is not None or stopping.is_set())
        return self.grant is not None

    def _start(self, runner: Runner, run_env: dict[str, str]) -> str | None:
        """Start the command unless aborted meanwhile; an error message if it cannot start."""
        run_dir, lease = self.run_dir, self.lease
        assert run_dir is not None
        launch = Launch(
            command=lease.command,
            run_dir=run_dir,
            stdout=run_dir / STDOUT_FILE,
            stderr=run_dir / STDERR_FILE,
            base_env={k: v for k, v in self.context.environ.items() if k not in PRIVATE_ENV},
            run_env=run_env,
            name=f"farmhand-{lease.run_id}-{_digest(lease.token)}",
            run_args=lease.run_args,
        )
        with self._lock:
            if self.abort is not None:
                return None
            try:
                self.handle = runner.start(launch)
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
        with self._lock:
            if self.abort is None and code is not None and code < 0 and self.context.kill_now:
                self.abort = "shutdown"  # killed by a second stop() before it was marked
            if self.abort is None:
                self.phase = "reporting"
        if self.abort is not None:
            handle.terminate(0.0 if self.context.kill_now else grace)
            return self._drop(self.abort)
        timed_out = code is None
        if timed_out:
            code = handle.terminate(grace)
        else:
            handle.reap_strays(grace)
        document, results_error = read_results(run_dir)
        tails = {
            "stdout_tail": read_tail(run_dir / STDOUT_FILE),
            "stderr_tail": read_tail(run_dir / STDERR_FILE),
        }
        if timed_out:
            self._fail(f"timed out after {self.timeout:g} s", code, **tails)
        elif code == 0 and results_error is None:
            self._report(
                "complete",
                wire.RunComplete(token=self.lease.token, exit_code=0, result=document, **tails),
            )
        else:
            error = describe_exit(code) if code != 0 else results_error
            assert error is not None
            self._fail(error, code, **tails)

    def _run_environment(self) -> dict[str, str]:
        """What this run adds to the agent's environment: its share, the record's `env`,
        then the FARMHAND_* variables."""
        lease, run_dir, grant = self.lease, self.run_dir, self.grant
        assert grant is not None
        extra = lease.run_args.get("env") or {}
        if not isinstance(extra, dict):
            raise ValueError(f"run_args.env must be a table of NAME = value, not {extra!r}")
        env = grant.environment(gpus_managed=self.context.allocator.gpus_managed)
        for name, value in extra.items():
            env[str(name)] = value if isinstance(value, str) else json.dumps(value)
        env.update(
            FARMHAND_RUN_ID=str(lease.run_id),
            FARMHAND_RECORD_ID=str(lease.record_id),
            FARMHAND_RECORD_KEY=lease.key,
            FARMHAND_CAMPAIGN_ID=str(lease.campaign_id),
            FARMHAND_ATTEMPT=str(lease.attempt),
            FARMHAND_AGENT_NAME=self.context.agent_name,
            FARMHAND_RUN_DIR=str(run_dir),
        )
        return env

    # --- outcomes ------------------------------------------------------------------------

    def _fail(self, error: str, exit_code: int | None, **tails: str) -> None:
        self._report(
            "fail",
            wire.RunFail(token=self.lease.token, error=error[:4096], exit_code=exit_code, **tails),
        )

    def _report(self, verb: str, body: wire.RunComplete | wire.RunFail) -> None:
        """Send the final report, retrying while the server is unreachable."""
        ctx, run_id = self.context, self.lease.run_id
        send = ctx.client.complete if verb == "complete" else ctx.client.fail
        try:
            retry_unavailable(
                lambda: send(run_id, body),
                what=f"report {self.label()}",
                deadline=ctx.report_deadline,
                interrupted=ctx.stopping,
            )
        except (ServerUnavailable, ApiError) as exc:
            if is_transient(exc):
                # TODO(outbox): keep the report in a durable local outbox, deliver it later.
                log.error(
                    "gave up reporting %s: the server stayed unavailable (%s); the result is lost",
                    self.label(),
                    exc,
                )
            else:
                log.warning(
                    "the server refused the report of %s: %s; dropping it", self.label(), exc
                )
            return
        took = f"{time.monotonic() - self.began:.1f}s"
        if isinstance(body, wire.RunComplete):
            ctx.count("done")
            log.info("done %s", self.label("exit 0", took))
        else:
            ctx.count("failed")
            log.info("failed %s", self.label(body.error, took))

    def _orphan(self, reason: str) -> None:
        """This agent cannot run the record as specified: report an orphan (no attempt is
        spent) and remove the partial run directory."""
        with self._lock:
            self.phase = "reporting"
        ctx = self.context
        if report_orphan(
            ctx.client,
            self.lease,
            reason,
            deadline=ctx.report_deadline,
            interrupted=ctx.stopping,
        ):
            ctx.count("orphaned")
            log.warning("orphaned %s", self.label(reason))
        self._remove_run_dir()

    def _drop(self, reason: str) -> None:
        """An aborted attempt: give the lease back on shutdown; remove the partial run dir."""
        if reason == "shutdown":
            release(self.context.client, self.lease)
        self._remove_run_dir()
        outcome = {"shutdown": "released", "cancelled": "cancelled"}.get(reason, "lost")
        self.context.count(outcome)
        log.info("%s %s", outcome, self.label(f"{time.monotonic() - self.began:.1f}s"))

    def _remove_run_dir(self) -> None:
        if self.run_dir is not None:
            try:
                remove_run_dir(self.run_dir)
            except OSError as exc:
                log.warning("could not remove %s: %s", self.run_dir, exc)
