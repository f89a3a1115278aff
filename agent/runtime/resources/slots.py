"""Command slots, handed out in the order the leases were claimed.

With `--prefetch` an agent holds more leases than it has slots; the extra ones wait, staged,
for a slot. They must get it in claim order — the server's priority order — and not in
whatever order their threads happen to wake, or a low-priority record could run first.
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
        self.free = slots
        self._waiting: deque[object] = deque()
        self._holders: set[object] = set()
        self._cond = threading.Condition()

    def enqueue(self, holder: object) -> None:
        """Take a turn; call it in claim order."""
        with self._cond:
            self._waiting.append(holder)

    def take(self, holder: object, timeout: float) -> bool:
        """A slot for `holder` once it is first in line and one is free; False after
        `timeout` seconds without (ask again, or give up with `done`)."""
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self.free > 0 and self._waiting and self._waiting[0] is holder, timeout
            )
            if not ready:
                return False
            self._waiting.popleft()
            self.free -= 1
            self._holders.add(holder)
            self._cond.notify_all()  # the next in line may find a slot too
            return True

    def done(self, holder: object) -> None:
        """`holder` ended: its slot goes to the next in line, or its turn is dropped."""
        with self._cond:
            if holder in self._holders:
                self._holders.discard(holder)
                self.free += 1
            elif holder in self._waiting:
                self._waiting.remove(holder)
            self._cond.notify_all()

    @property
    def queued(self) -> int:
        """Holders waiting for a slot."""
        with self._cond:
            return len(self._waiting)
