"""Wake long-polling claims when records may have become claimable.

Claims that found nothing wait on a future of their own instead of holding a worker thread;
any thread that makes records ready calls `notify(count)` after its commit, which wakes about
`count` of them, longest-waiting first (or every one, without a count). Other server replicas
hear of it through a relay (`relay.py`: PostgreSQL LISTEN/NOTIFY), which `notify()` pokes and
which calls `wake()` for notifications from elsewhere. `Coalescer` keeps that relay from
sending one message per event in a burst.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable


class Wakeup:
    """Waiting claims, woken by `notify()` (or `wake()`): a count wakes about that many, the
    longest-waiting first; no count wakes them all.

    A partial wake can miss: a woken claim may find nothing (another claim took the record,
    or its filters — campaign, dataset, runner, resources, walltime — do not fit) while a
    claimable record stays behind and the waiters that could take it sleep on. Nothing is
    lost for long: the queue watch (app.py `_watch_queue`) looks once per
    `claim_poll_interval` while claims wait and wakes every one of them when anything is
    claimable, so a record reaches a fitting waiter within that interval at worst. Waking
    exactly `count` (not a multiple) is deliberate: each woken claim that finds work takes at
    least one record, so `count` claims cover `count` records; extra wakes would not help a
    mismatch (the next waiters in line are as likely not to fit), only cost an attempt each.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # The first is the claim that has waited longest; each is removed when it wakes.
        self._waiters: OrderedDict[asyncio.Future[None], None] = OrderedDict()
        self._generation = 0
        self._relay: Callable[[int | None], None] | None = None
        self._quiet_generation = -1  # see `settle`
        self._quiet_until = 0.0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's event loop (at startup)."""
        self._loop = loop

    def relay_to(self, relay: Callable[[int | None], None] | None) -> None:
        """Also call `relay(count)` (in the loop) on every `notify()`: how other replicas
        hear."""
        self._relay = relay

    @property
    def waiting(self) -> int:
        """Claims waiting now (not yet woken)."""
        return len(self._waiters)

    @property
    def generation(self) -> int:
        """Counts wakeups, partial ones included. Read it before a claim attempt and pass it to
        `wait(since=…)`."""
        return self._generation

    def settle(self, generation: int, until: float) -> None:
        """The queue watch, looking at `generation`, found nothing claimable, and nothing
        falls due (a retry delay, a lease) before `until` (`time.monotonic()`): until then,
        or the next wakeup, a claim attempt would find nothing (`quiet`). Call it in the
        loop; a wakeup since `generation` makes it a no-op."""
        if generation == self._generation:
            self._quiet_generation, self._quiet_until = generation, until

    @property
    def quiet(self) -> bool:
        """Whether the queue is known to hold nothing claimable now: what the queue watch
        last `settle`d still holds (no wakeup since, nothing fallen due). Idle long polls
        skip their claim attempts while it does (issue 16: 1,000 idle agents)."""
        return self._quiet_generation == self._generation and time.monotonic() < self._quiet_until

    def notify(self, count: int | None = None) -> None:
        """Wake about `count` waiting claims (every one if None), here and on other replicas.
        Safe from any thread; `count` is how many records this commit made claimable."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify, count)

    def _notify(self, count: int | None) -> None:
        self.wake(count)
        if self._relay is not None:
            self._relay(count)

    def wake(self, count: int | None = None) -> None:
        """Wake `count` of this process's waiters, longest-waiting first (every one if None).
        Call it in the loop."""
        self._generation += 1
        woken = 0
        while self._waiters and (count is None or woken < count):
            future, _ = self._waiters.popitem(last=False)
            # A waiter whose time ran out in this tick is gone already: it does not count.
            if not future.done():
                future.set_result(None)
                woken += 1

    async def wait(self, timeout: float, *, since: int | None = None) -> bool:
        """Wait until woken or `timeout` seconds pass; True when woken.

        With `since` (a `generation` read earlier), any wakeup after that reading — partial
        or not, whoever it woke — returns at once: a claim that found nothing must not miss a
        submit that committed while its attempt ran, and one more attempt is always safe.
        """
        if since is not None and since != self._generation:
            return True
        if self._loop is None:
            await asyncio.sleep(timeout)
            return False
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters[future] = None
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            # Woken in the same tick as the timeout: the wakeup was meant for this claim.
            return future.done() and not future.cancelled()
        finally:
            self._waiters.pop(future, None)
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
