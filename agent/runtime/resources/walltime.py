"""How long this agent may still work: the end of its batch job, or `--walltime`.

Under Slurm the agent asks `squeue` for its job's time left (`SLURM_JOB_ID`), falling back to
`scontrol show job`'s EndTime; elsewhere `--walltime` counts from the agent's start. Times
are kept on the monotonic clock, so a wall-clock step on the node does not move the drain.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from farmhand import wire
from farmhand.wire.durations import clock_seconds, parse_duration

if TYPE_CHECKING:
    from farmhand.runtime.attempt import Attempt

__all__ = [
    "Walltime",
    "checkpoint_all",
    "describe",
    "parse_duration",
    "parse_slurm_time_left",
    "run_walltime",
    "slurm_time_left",
]

log = logging.getLogger("farmhand.agent")

#: How often the job's end is asked again (`scontrol update TimeLimit=` can move it).
REFRESH_EVERY = 300.0
_UNLIMITED = {"UNLIMITED", "NOT_SET", "INFINITE"}


def parse_slurm_time_left(text: str) -> float | None:
    """`squeue -o %L` output as seconds; None for an unlimited job. ValueError otherwise."""
    value = text.strip()
    if value.upper() in _UNLIMITED:
        return None
    if not value or value.upper() == "INVALID":
        raise ValueError(f"squeue reported no time left: {text!r}")
    return clock_seconds(value)


def slurm_time_left(job_id: str) -> float | None:
    """Seconds until Slurm job `job_id` hits its time limit (None: unlimited), read with
    `squeue`, else from `scontrol show job`'s EndTime. Raises RuntimeError naming both
    failures when neither answers."""
    problems = []
    try:
        out = _ask(["squeue", "-h", "-j", job_id, "-o", "%L"])
        return parse_slurm_time_left(out.splitlines()[0] if out else "")
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        problems.append(f"squeue: {exc}")
    try:
        out = _ask(["scontrol", "show", "job", "-o", job_id])
        match = re.search(r"\bEndTime=(\S+)", out)
        if match is None:
            raise ValueError("no EndTime in its answer")
        if match.group(1).upper() in _UNLIMITED | {"UNKNOWN"}:
            return None
        # scontrol prints the controller's local time without a zone; this node shares it.
        end = datetime.fromisoformat(match.group(1)).timestamp()
        return max(0.0, end - time.time())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        problems.append(f"scontrol: {exc}")
    raise RuntimeError(f"cannot learn the end of Slurm job {job_id}: " + "; ".join(problems))


def _ask(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise ValueError(f"exit status {done.returncode}: {done.stderr.strip()[:200]}")
    return done.stdout.strip()


class Walltime:
    """The end of this agent's time and the margin it keeps before it.

    `usable()` is what a record may still take: the time left minus the margin, at which the
    walltime drain begins. With no end (`end is None`) everything is unlimited.
    """

    def __init__(
        self,
        end: float | None,
        margin: float,
        source: str = "",
        *,
        refresh: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if margin < 0:
            raise ValueError(f"the walltime margin must not be negative, not {margin}")
        self.end = end
        self.margin = margin
        self.source = source
        self._refresh = refresh
        self._clock = clock
        self._refreshed = clock()

    @classmethod
    def discover(
        cls,
        *,
        walltime: float | None,
        margin: float,
        environ: Mapping[str, str],
    ) -> Walltime:
        """The earlier of `walltime` (seconds from now) and the Slurm job's end."""
        now = time.monotonic()
        ends: list[tuple[float, str]] = []
        refresh = None
        if walltime is not None:
            ends.append((now + walltime, f"--walltime {walltime:g}s"))
        job_id = environ.get("SLURM_JOB_ID")
        if job_id:
            try:
                left = slurm_time_left(job_id)
            except RuntimeError as exc:
                log.warning("%s; the agent runs without a walltime from Slurm", exc)
            else:
                if left is not None:
                    ends.append((now + left, f"Slurm job {job_id}"))
                if walltime is None:
                    refresh = lambda: slurm_time_left(job_id)  # noqa: E731
        if not ends:
            return cls(None, margin, "unlimited", refresh=refresh)
        end, source = min(ends)
        return cls(end, margin, source, refresh=refresh)

    def left(self) -> float | None:
        """Seconds until the end; None when unlimited."""
        return None if self.end is None else max(0.0, self.end - self._clock())

    def usable(self) -> float | None:
        """Seconds a record may still take (time left minus the margin); None = unlimited."""
        left = self.left()
        return None if left is None else max(0.0, left - self.margin)

    def drain_due(self) -> bool:
        """Whether the margin before the end has been reached."""
        usable = self.usable()
        return usable is not None and usable <= 0

    def fits(self, seconds: float) -> bool:
        """Whether a record estimated at `seconds` can finish before the drain."""
        usable = self.usable()
        return usable is None or seconds <= usable

    def refuses(self, lease: wire.Lease) -> str | None:
        """Why `lease` cannot finish before the drain (its run_args walltime is longer than
        the time usable), or None. An unreadable estimate is logged and does not refuse."""
        try:
            need = run_walltime(lease.run_args)
        except ValueError as exc:
            log.warning("%s (run %d): %s; running it anyway", lease.key, lease.run_id, exc)
            return None
        if need is None or self.fits(need):
            return None
        left = describe(self.usable())
        return f"needs walltime {describe(need)}; this agent has {left} before its drain"

    def maybe_refresh(self) -> None:
        """Ask the batch system again every REFRESH_EVERY seconds (its limit may change)."""
        now = self._clock()
        if self._refresh is None or now - self._refreshed < REFRESH_EVERY:
            return
        self._refreshed = now
        try:
            left = self._refresh()
        except RuntimeError as exc:
            log.warning("%s; keeping the end learned before", exc)
            return
        end = None if left is None else now + left
        if (end is None) != (self.end is None) or (
            end is not None and self.end is not None and abs(end - self.end) > 5
        ):
            log.info("the batch job's end moved: %s left now", describe(left))
        self.end = end

    def describe(self) -> str:
        """`2h 3m left (Slurm job 17), drain 2m before` for logs."""
        if self.end is None:
            return "no walltime limit"
        return f"{describe(self.left())} left ({self.source}), drain {describe(self.margin)} before"


def describe(seconds: float | None) -> str:
    """`1h 02m`, `4m 05s`, `12s`, or `unlimited`."""
    if seconds is None:
        return "unlimited"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def run_walltime(run_args: Mapping[str, Any]) -> float | None:
    """A record's walltime estimate in seconds, None when it has none (`wire.walltime_seconds`)."""
    return wire.walltime_seconds(run_args)


def checkpoint_all(
    attempts: Iterable[Attempt], signum: int, grace: float, interrupted: Callable[[], bool]
) -> None:
    """The walltime drain's first step: send `signum` to every running command (attempts
    not running yet are aborted), then wait up to `grace` seconds for them to end."""
    signalled = [a for a in attempts if a.checkpoint(signum)]
    if not signalled:
        return
    log.info(
        "walltime drain: sent %s to %d running command(s) to checkpoint; waiting up to %gs",
        signal.Signals(signum).name,
        len(signalled),
        grace,
    )
    deadline = time.monotonic() + grace
    for attempt in signalled:
        while attempt.thread.is_alive() and not interrupted():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            attempt.thread.join(min(left, 0.2))
