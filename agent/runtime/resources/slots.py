"""Command slots, handed out in the order the leases were claimed.

With prefetch an agent holds more leases than it has slots; the extra ones wait, staged, for
a slot. They must get it in claim order — the server's priority order — and not in whatever
order their threads happen to wake, or a low-priority record could run first.

A freed slot is handed straight to the first in line, whose own event is set: only the
thread that gets the slot wakes (a shared condition woke every queued thread per freed slot,
and with a deep prefetch queue of short commands those wake-ups were most of the agent's
thread switches).
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Slots"]


class Slots:
    """`slots` places; `enqueue(holder)` in claim order, then `take(holder)` until it gets
    one, `done(holder)` when it ends (giving back its place, or its turn)."""

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        self.free = slots  # neither held nor handed to the first in line
        self._waiting: deque[object] = deque()
        self._granted: dict[object, threading.Event] = {}  # handed a slot, or waiting for one
        self._lock = threading.Lock()

    def enqueue(self, holder: object) -> None:
        """Take a turn; call it in claim order."""
        with self._lock:
            self._granted[holder] = threading.Event()
            self._waiting.append(holder)
            self._hand_over()

    def take(self, holder: object, timeout: float) -> bool:
        """True once `holder`'s turn came and a slot is its own; False after `timeout`
        seconds without (ask again, or give up with `done`)."""
        with self._lock:
            event = self._granted.get(holder)
        if event is None:
            raise ValueError("take() of a holder that was never enqueued")
        return event.wait(timeout) if timeout > 0 else event.is_set()

    def done(self, holder: object) -> None:
        """`holder` ended: its slot goes to the next in line, or its turn is dropped."""
        with self._lock:
            event = self._granted.pop(holder, None)
            if event is None:
                return
            if event.is_set():
                self.free += 1
            else:
                self._waiting.remove(holder)
            self._hand_over()

    def _hand_over(self) -> None:
        """Give free slots to the first in line (called with the lock held)."""
        while self.free > 0 and self._waiting:
            self.free -= 1
            self._granted[self._waiting.popleft()].set()

    @property
    def queued(self) -> int:
        """Holders waiting for a slot."""
        with self._lock:
            return len(self._waiting)
