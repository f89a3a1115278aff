"""Wake long-polling claims when records may have become claimable.

Claims that found nothing wait on an asyncio event instead of holding a worker thread; any
thread that makes records ready calls `notify()`. (Across server replicas this becomes
LISTEN/NOTIFY; here it is in-process.)
"""

from __future__ import annotations

import asyncio


class Wakeup:
    """A broadcast: every waiter wakes on the next `notify()`."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's event loop (at startup)."""
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every waiting claim. Safe to call from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Wait until notified or `timeout` seconds pass; True when notified."""
        event = self._event
        if event is None:
            await asyncio.sleep(timeout)
            return False
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
