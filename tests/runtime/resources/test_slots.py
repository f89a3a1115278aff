"""Slots go to waiting leases in claim order, whatever order their threads ask in."""

from __future__ import annotations

import threading

import pytest

from farmhand.runtime.resources.slots import Slots


def test_the_first_in_line_gets_the_free_slot() -> None:
    slots = Slots(1)
    a, b, c = object(), object(), object()
    for holder in (a, b, c):
        slots.enqueue(holder)
    assert not slots.take(b, timeout=0)  # free, but a is ahead
    assert slots.take(a, timeout=0) and slots.queued == 2
    assert not slots.take(b, timeout=0)  # a holds the only slot
    slots.done(c)  # c gives up its turn (aborted while queued)
    slots.done(a)
    assert slots.take(b, timeout=0) and slots.queued == 0
    slots.done(b)
    assert slots.free == 1


def test_threads_asking_in_any_order_run_in_claim_order() -> None:
    slots = Slots(1)  # one at a time, so the order of the work is the order of the slots
    holders = [object() for _ in range(8)]
    for holder in holders:
        slots.enqueue(holder)
    order: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        while not slots.take(holders[index], timeout=0.05):
            pass
        with lock:
            order.append(index)
        slots.done(holders[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in reversed(range(8))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert order == list(range(8))
    assert slots.free == 1


def test_no_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
