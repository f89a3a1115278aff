"""How an attempt ends: its final report (complete or fail, with the run directory packed
as its archive), an orphan, a give-back, or a runner that could not start the command. A
part of `Attempt` (`attempt.py`), kept in its own module; it uses the attempt's attributes
set in `Attempt.__init__`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path

from farmhand import wire
from farmhand.runtime.context import RELEASE_REASONS, Context, release, report_orphan
from farmhand.runtime.files import run_archive
from farmhand.runtime.files.checkpoints import Checkpointer
from farmhand.runtime.files.rundirs import remove_run_dir
from farmhand.runtime.files.stage_in import Prepared
from farmhand.runtime.runners import RunningProcess

__all__ = ["Outcomes"]

log = logging.getLogger("farmhand.agent")


class Outcomes:
    """The reporting side of `Attempt` (see the module docstring)."""

    # Set by Attempt.__init__:
    lease: wire.Lease
    context: Context
    phase: str
    began: float
    started_at: datetime | None
    handle: RunningProcess | None
    run_dir: Path | None
    prepared: Prepared | None
    checkpointer: Checkpointer | None
    _lock: threading.Lock

    def label(self, *details: str) -> str:
        raise NotImplementedError

    def _fail(self, error: str, exit_code: int | None, *, ran: bool = False, **tails: str) -> None:
        if ran and self.checkpointer is not None:
            self.checkpointer.save("final")  # the retry resumes from here
        self._report(
            "fail",
            wire.RunFail(token=self.lease.token, error=error[:4096], exit_code=exit_code, **tails),
            ran=ran,
        )

    def _report(
        self, verb: str, body: wire.RunComplete | wire.RunFail, *, ran: bool = False
    ) -> None:
        """Hand the final report to the outbox, which delivers it (now, or once the server
        is back); the agent counts and logs it when the server has taken it. After a command
        `ran`, its run directory goes with it as an archive, and is removed once delivered."""
        body.started_at = self.started_at
        took = f"{time.monotonic() - self.began:.1f}s"
        details = ("exit 0", took) if isinstance(body, wire.RunComplete) else (body.error, took)
        pending = data = remove = None
        if ran and self.run_dir is not None:
            packed = run_archive.archive(
                self.lease,
                self.run_dir,
                self.context.outbox.archives,
                staged=self.prepared.staged if self.prepared is not None else {},
            )
            if packed is not None:
                body.archive, pending, data = packed.sha256, packed.pending, packed.data
                keep = verb == "fail" and self.context.snapshots.keep_failed_workdir
                remove = None if keep else self.run_dir
        self.context.outbox.put(
            self.lease.run_id,
            verb,
            body,
            self.label(*details),
            archive_file=pending,
            archive_data=data,
            remove_after=remove,
        )

    def _orphan(self, reason: str) -> None:
        """This agent cannot run the record as specified: report an orphan through the
        outbox (no attempt is spent; counted once delivered) and remove the partial run
        directory."""
        with self._lock:
            self.phase = "reporting"
        report_orphan(self.context.outbox, self.lease, reason, self.label(reason))
        self._remove_run_dir()

    def _runner_failed(self, runner: str, why: str) -> None:
        """The runner could not start the command (its program or container engine failed):
        not the calculation's fault, so the record goes back to the queue with its attempt
        unspent. After `BROKEN_AFTER` such failures in a row this agent stops offering the
        runner (`Runners.failed`), saying why in its log and its heartbeat status."""
        with self._lock:
            self.phase = "reporting"
        if self.checkpointer is not None:
            self.checkpointer.stop()
        reason = f"runner {runner!r} could not start the command: {why}"
        release(self.context.outbox, self.lease, reason)
        self._remove_run_dir()
        self.context.count("refused")
        log.warning("gave back %s: %s", self.label(), reason)
        if self.context.runners.failed(runner, why):
            log.warning(
                "this agent stops offering runner %r: %s",
                runner,
                self.context.runners.problem(runner),
            )
            if self.context.on_runner_broken is not None:
                self.context.on_runner_broken()

    def _drop(self, reason: str) -> None:
        """An aborted attempt: give the lease back on shutdown and at the walltime drain
        (its checkpoint saved first); remove the partial run dir, except after a checkpoint
        signal (it may hold one)."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
            if reason in RELEASE_REASONS and self.handle is not None:
                with self._lock:
                    self.phase = "saving"
                self.checkpointer.save("final")
        if reason in RELEASE_REASONS:
            release(self.context.outbox, self.lease, RELEASE_REASONS[reason])
        if self.run_dir is not None and reason == "walltime" and self.handle is not None:
            log.info("kept %s: it may hold the checkpoint of %s", self.run_dir, self.label())
        else:
            self._remove_run_dir()
        outcome = "released" if reason in RELEASE_REASONS else reason
        outcome = outcome if outcome in ("released", "cancelled") else "lost"
        self.context.count(outcome)
        log.info("%s %s", outcome, self.label(f"{time.monotonic() - self.began:.1f}s"))

    def _remove_run_dir(self) -> None:
        if self.run_dir is not None:
            try:
                remove_run_dir(self.run_dir)
            except OSError as exc:
                log.warning("could not remove %s: %s", self.run_dir, exc)
