"""Wake long-polling claims when records may have become claimable.

Claims that found nothing wait on an asyncio event instead of holding a worker thread; any
thread that makes records ready calls `notify()` after its commit. Other server replicas hear
of it through a relay (`relay.py`: PostgreSQL LISTEN/NOTIFY), which `notify()` pokes and
which calls `wake()` for notifications from elsewhere. `Coalescer` keeps that relay from
sending one message per event in a burst.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Wakeup:
    """A broadcast: every waiter wakes on the next `notify()` (or `wake()`)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._generation = 0
        self._relay: Callable[[], None] | None = None
        self.waiting = 0  #: claims waiting now

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's event loop (at startup)."""
        self._loop = loop
        self._event = asyncio.Event()

    def relay_to(self, relay: Callable[[], None] | None) -> None:
        """Also call `relay()` (in the loop) on every `notify()`: how other replicas hear."""
        self._relay = relay

    @property
    def generation(self) -> int:
        """Counts wakeups. Read it before a claim attempt and pass it to `wait(since=…)`."""
        return self._generation

    def notify(self) -> None:
        """Wake every waiting claim, here and on other replicas. Safe from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        self.wake()
        if self._relay is not None:
            self._relay()

    def wake(self) -> None:
        """Wake this process's waiters only. Call it in the loop."""
        self._generation += 1
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float, *, since: int | None = None) -> bool:
        """Wait until notified or `timeout` seconds pass; True when notified.

        With `since` (a `generation` read earlier), a wakeup that came after that reading
        returns at once: a claim that found nothing must not miss a submit that committed
        while its attempt ran.
        """
        if since is not None and since != self._generation:
            return True
        event = self._event
        if event is None:
            await asyncio.sleep(timeout)
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            self.waiting -= 1
        return True


class Coalescer:
    """Run `send()` soon after `poke()`, at most once per `interval` seconds.

    Pokes while a send runs or during the quiet interval after it become one trailing send,
    so the last event is never dropped. A failed send (`send()` returns False) keeps the
    event pending and is retried after `retry_delays` (the last delay repeats) until one
    succeeds. `poke()` must be called in the loop that runs `run()`.
    """

    def __init__(
        self,
        send: Callable[[], Awaitable[bool]],
        interval: float,
        retry_delays: tuple[float, ...] = (0.1, 0.5, 2.0, 5.0),
    ) -> None:
        self._send = send
        self.interval = interval
        self._retry_delays = retry_delays
        self._pending = asyncio.Event()

    def poke(self) -> None:
        """An event happened: send once it is allowed."""
        self._pending.set()

    async def run(self) -> None:
        """Send until cancelled."""
        failures = 0
        while True:
            await self._pending.wait()
            # Clear before sending: a poke that lands while the send is on the wire may be
            # for a commit the message went out before, so it needs a send of its own.
            self._pending.clear()
            if await self._send():
                failures = 0
                await asyncio.sleep(self.interval)
                continue
            self._pending.set()
            delay = self._retry_delays[min(failures, len(self._retry_delays) - 1)]
            failures += 1
            await asyncio.sleep(max(delay, self.interval))
