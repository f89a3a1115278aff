"""How many leases an agent holds beyond its slots: `--prefetch M`, or by default `auto`.

A slot freed by a command that ran for a millisecond waits a whole claim round trip for its
next record unless a lease is already staged and queued for it. Prefetching costs something
too: a queued record is leased to this agent while another agent might have run it at once.
`auto` weighs the two by what this agent's commands did lately: while the median of the last
`WINDOW` commands is under `SHORT_COMMAND` seconds, it holds `AHEAD` times `slots` leases ahead
(a queued record then waits about as long as two short commands) and claims once `slots`
places are free, so that each claim brings a slot's worth of records while as many still
wait queued (claiming at each freed place brought two to five records a request); with
longer commands, or before any ended, none.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque

__all__ = ["AHEAD", "AUTO", "SHORT_COMMAND", "WINDOW", "Prefetch"]

#: The `--prefetch` value that lets the agent choose.
AUTO = "auto"
#: Commands shorter than this (seconds, median) are worth claiming ahead for.
SHORT_COMMAND = 1.0
#: Leases held ahead per slot while commands are short.
AHEAD = 2
#: How many recent commands the median is taken over (and how many must have ended first).
WINDOW = 16
MIN_SEEN = 4


class Prefetch:
    """`depth()` leases beyond the slots: `fixed`, or (None) chosen from recent commands."""

    def __init__(self, fixed: int | None, slots: int):
        if fixed is not None and fixed < 0:
            raise ValueError(f"prefetch must not be negative, not {fixed}")
        self.fixed = fixed
        self.slots = slots
        self._recent: deque[float] = deque(maxlen=WINDOW)
        self._lock = threading.Lock()
        self._depth = fixed or 0

    @property
    def auto(self) -> bool:
        """Whether the agent chooses the depth itself."""
        return self.fixed is None

    def depth(self) -> int:
        """Leases to hold beyond the slots now."""
        return self._depth

    def least_claim(self) -> int:
        """Free places worth a claim: `slots` while `auto` holds leases ahead, else one."""
        return self.slots if self.fixed is None and self._depth else 1

    def command_ended(self, seconds: float) -> None:
        """A command ran for `seconds`; with `auto`, the depth follows the recent median."""
        if self.fixed is not None:
            return
        with self._lock:
            self._recent.append(seconds)
            if len(self._recent) < MIN_SEEN:
                return
            short = statistics.median(self._recent) < SHORT_COMMAND
            self._depth = AHEAD * self.slots if short else 0

    def describe(self) -> str:
        """`2`, or `auto (now 8)` for logs and the display."""
        return str(self.fixed) if self.fixed is not None else f"{AUTO} (now {self._depth})"
