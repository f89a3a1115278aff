"""`Wakeup` (the in-process wakeups: a count, or all) and `Coalescer` (the NOTIFY rate limit),
on real event loops and threads."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

from farmhand.server.queue.waking.wakeups import Coalescer, Wakeup

SLACK = 0.001  # loop clock resolution: a sleep may end this much early


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until `condition()` holds; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


class Recorder:
    """A send that records the loop time of each call and answers from a script."""

    def __init__(self, answers: list[bool] | None = None) -> None:
        self.times: list[float] = []
        self.answers = answers or []

    async def __call__(self) -> bool:
        self.times.append(asyncio.get_running_loop().time())
        return self.answers.pop(0) if self.answers else True


def test_a_wakeup_during_the_claim_attempt_is_not_missed() -> None:
    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        seen = wakeup.generation  # read before the (simulated) claim attempt
        done = threading.Event()
        # The submit commits and notifies from a worker thread while the attempt runs.
        threading.Thread(target=lambda: (wakeup.notify(), done.set())).start()
        await until(done.is_set)
        await until(lambda: wakeup.generation != seen)
        assert await wakeup.wait(5, since=seen) is True
        # Without a wakeup since the reading, wait() waits for the next one.
        assert await wakeup.wait(0.01, since=wakeup.generation) is False

    asyncio.run(main())


def test_notify_calls_the_relay_and_wake_does_not() -> None:
    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        relayed: list[int] = []
        wakeup.relay_to(lambda count: relayed.append(wakeup.generation))
        waiter = asyncio.create_task(wakeup.wait(10))
        await asyncio.sleep(0)
        wakeup.wake()  # a notification from another replica: wakes, is not sent back out
        assert await waiter is True
        assert relayed == []
        threads = [threading.Thread(target=wakeup.notify) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        await until(lambda: len(relayed) == 3)
        assert relayed == [2, 3, 4]  # each relayed after its own local wake
        wakeup.relay_to(None)
        wakeup.notify()
        await until(lambda: wakeup.generation == 5)
        assert len(relayed) == 3

    asyncio.run(main())


class Waiters:
    """`n` claims waiting on `wakeup`, started one after another (the first waits longest)."""

    def __init__(self, wakeup: Wakeup, n: int) -> None:
        self.wakeup = wakeup
        self.tasks: list[asyncio.Task[bool]] = []
        self.n = n

    async def start(self) -> None:
        before = self.wakeup.waiting
        for _ in range(self.n):
            self.tasks.append(asyncio.create_task(self.wakeup.wait(30)))
            await until(lambda: self.wakeup.waiting == before + len(self.tasks))  # in order

    def woken(self) -> list[int]:
        """Which of them have woken (by their start order)."""
        return [i for i, task in enumerate(self.tasks) if task.done() and task.result()]

    async def settle(self) -> None:
        """Let every woken waiter run to its end."""
        for _ in range(5):
            await asyncio.sleep(0)

    async def end(self) -> None:
        self.wakeup.wake()
        await asyncio.gather(*self.tasks)


def test_a_count_wakes_that_many_waiters_longest_waiting_first() -> None:
    """Mutation caught: `notify(count)` waking every waiter (the broadcast it replaced)."""

    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        waiters = Waiters(wakeup, 10)
        await waiters.start()
        wakeup.notify(3)  # a submit of 3 records
        await until(lambda: len(waiters.woken()) >= 3)
        await waiters.settle()
        assert waiters.woken() == [0, 1, 2]
        assert wakeup.waiting == 7
        wakeup.notify(1)
        await until(lambda: len(waiters.woken()) >= 4)
        await waiters.settle()
        assert waiters.woken() == [0, 1, 2, 3] and wakeup.waiting == 6
        wakeup.notify(100)  # more records than waiters: every one wakes, nothing is owed
        await until(lambda: len(waiters.woken()) == 10)
        assert wakeup.waiting == 0

    asyncio.run(main())


def test_no_count_wakes_every_waiter() -> None:
    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        waiters = Waiters(wakeup, 10)
        await waiters.start()
        wakeup.notify()
        await until(lambda: len(waiters.woken()) == 10)
        assert wakeup.waiting == 0

    asyncio.run(main())


def test_a_partial_wakeup_during_an_attempt_still_returns_at_once() -> None:
    """A claim that was attempting (not waiting) when a count woke others must not sleep
    through that wakeup: its records may be the ones nobody else fits."""

    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        waiters = Waiters(wakeup, 5)
        await waiters.start()
        seen = wakeup.generation  # read before this claim's attempt
        wakeup.notify(1)  # wakes the longest waiter, not this claim
        await until(lambda: waiters.woken() == [0])
        assert await wakeup.wait(30, since=seen) is True
        assert wakeup.waiting == 4
        await waiters.end()

    asyncio.run(main())


def test_a_waiter_whose_time_ran_out_is_not_counted_as_woken() -> None:
    """A count never lands on a claim that is leaving: the next in line wakes instead."""

    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        leaving = asyncio.create_task(wakeup.wait(30))
        await until(lambda: wakeup.waiting == 1)
        waiters = Waiters(wakeup, 2)
        await waiters.start()
        leaving.cancel()  # as a timeout does: the future is cancelled before it is removed
        wakeup.wake(1)
        await until(lambda: waiters.woken() == [0])
        assert wakeup.waiting == 1
        await waiters.end()

    asyncio.run(main())


def test_a_timed_out_waiter_leaves_the_line() -> None:
    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        assert await wakeup.wait(0.01) is False
        assert wakeup.waiting == 0

    asyncio.run(main())


def test_a_burst_of_pokes_is_one_send_then_one_trailing_send() -> None:
    interval = 0.05

    async def main() -> None:
        send = Recorder()
        coalescer = Coalescer(send, interval)
        runner = asyncio.create_task(coalescer.run())
        for _ in range(1000):
            coalescer.poke()
        await until(lambda: len(send.times) == 1)
        for _ in range(1000):  # during the quiet interval after the first send
            coalescer.poke()
        await until(lambda: len(send.times) == 2)
        assert send.times[1] - send.times[0] >= interval - SLACK
        poked_at = asyncio.get_running_loop().time()
        coalescer.poke()  # a probe: had the bursts left anything pending, it would come first
        await until(lambda: len(send.times) >= 3)
        await until(lambda: asyncio.get_running_loop().time() > send.times[-1] + interval)
        runner.cancel()
        assert len(send.times) == 3
        assert send.times[2] >= poked_at

    asyncio.run(main())


def test_steady_pokes_send_at_most_once_per_interval_and_never_drop_the_last() -> None:
    interval = 0.05

    async def main() -> None:
        loop = asyncio.get_running_loop()
        send = Recorder()
        coalescer = Coalescer(send, interval)
        runner = asyncio.create_task(coalescer.run())
        started = loop.time()
        while loop.time() < started + 0.3:
            coalescer.poke()
            await asyncio.sleep(0.002)
        last_poke = loop.time()
        coalescer.poke()
        await until(lambda: send.times[-1] >= last_poke)  # the trailing send comes
        runner.cancel()
        gaps = [b - a for a, b in itertools.pairwise(send.times)]
        assert len(send.times) >= 3
        assert min(gaps) >= interval - SLACK
        assert len(send.times) <= (send.times[-1] - started) / interval + 1

    asyncio.run(main())


def test_a_failed_send_stays_pending_and_is_retried() -> None:
    async def main() -> None:
        send = Recorder(answers=[False, False, True])
        coalescer = Coalescer(send, 0.001, retry_delays=(0.01, 0.02))
        runner = asyncio.create_task(coalescer.run())
        coalescer.poke()
        await until(lambda: len(send.times) == 3)
        runner.cancel()
        first, second, third = send.times
        assert second - first >= 0.01 - SLACK
        assert third - second >= 0.02 - SLACK

    asyncio.run(main())
