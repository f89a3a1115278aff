"""The disk guard (`--disk-limit 90%`): claim nothing while the run directory's filesystem is
fuller than the limit, and say so; resume once space frees.

Runs that already started keep running: stopping them would waste their work, and the
commands themselves decide what to do when a write fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["DiskGuard", "parse_limit", "used_percent"]

log = logging.getLogger("farmhand.agent")


def parse_limit(text: str) -> float:
    """`90%` or `90` → 90.0; ValueError unless it is a percentage above 0 and at most 100."""
    value = str(text).strip()
    number = value[:-1] if value.endswith("%") else value
    try:
        limit = float(number)
    except ValueError:
        limit = -1.0
    if not 0 < limit <= 100:  # also rejects nan
        raise ValueError(f"not a disk limit: {text!r} (give a percentage such as 90%)")
    return limit


def used_percent(path: Path) -> float:
    """How full `path`'s filesystem is, as `df` counts it: used / (used + available to us)."""
    info = os.statvfs(path)
    used = (info.f_blocks - info.f_bfree) * info.f_frsize
    available = info.f_bavail * info.f_frsize
    total = used + available
    return 100.0 * used / total if total else 0.0


class DiskGuard:
    """Checks `path`'s filesystem against `limit` percent (None: no limit, only measures)."""

    def __init__(
        self,
        path: Path,
        limit: float | None,
        *,
        measure: Callable[[Path], float] = used_percent,
    ):
        if limit is not None and not 0 < limit <= 100:
            raise ValueError(f"the disk limit must be a percentage in (0, 100], not {limit}")
        self.path = Path(path)
        self.limit = limit
        self.used: float | None = None  #: the last measurement, in percent
        self.paused: str | None = None  #: why claims are paused, while they are
        self._measure = measure

    def check(self) -> str | None:
        """Measure now; the reason to claim nothing, or None. Logs each change of mind."""
        try:
            self.used = self._measure(self.path)
        except OSError as exc:
            self.used = None
            reason = f"cannot measure the disk of {self.path}: {exc.strerror or exc}"
            return self._pause(reason) if self.limit is not None else None
        if self.limit is None or self.used < self.limit:
            if self.paused is not None:
                log.info(
                    "disk guard: %s is %.1f%% used, under the %g%% limit again: claiming again",
                    self.path,
                    self.used,
                    self.limit,
                )
                self.paused = None
            return None
        return self._pause(f"disk {self.used:.1f}% used, limit {self.limit:g}% ({self.path})")

    def _pause(self, reason: str) -> str:
        if self.paused is None:
            log.warning("disk guard: %s: claiming nothing until space frees", reason)
        self.paused = reason
        return reason
