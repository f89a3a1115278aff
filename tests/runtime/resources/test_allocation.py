"""The agent's free share: grants, disjoint GPUs, waiting in order."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.runtime.resources.allocation import Allocator, Grant
from farmhand.runtime.resources.node import Need, NodeResources

if TYPE_CHECKING:
    from tests.support.agent_side import Probe

NODE = NodeResources(cores=8, gpus=("0", "1", "2", "3"), memory_mb=16384)


def never() -> bool:
    return False


def test_a_record_that_names_no_cores_takes_one_slots_share() -> None:
    allocator = Allocator(NodeResources(cores=2), slots=8)
    grants = [allocator.acquire(Need(), never) for _ in range(8)]
    assert {g.cores for g in grants if g} == {0.25}
    assert not allocator.has_room()
    assert allocator.free().cores == 0
    assert grants[0] is not None
    allocator.release(grants[0])
    assert allocator.has_room() and allocator.free().cores == 0.25


def test_gpu_grants_are_disjoint_and_reused() -> None:
    allocator = Allocator(NODE, slots=4)
    a = allocator.acquire(Need(cores=1, gpus=2), never)
    b = allocator.acquire(Need(cores=1, gpus=2), never)
    assert a is not None and b is not None
    assert (a.gpus, b.gpus) == (("0", "1"), ("2", "3"))
    assert allocator.free().gpus == 0
    allocator.release(a)
    c = allocator.acquire(Need(cores=1, gpus=1), never)
    assert c is not None and c.gpus == ("0",)


def test_never_fits_says_what_is_missing() -> None:
    allocator = Allocator(NODE, slots=4)
    assert allocator.never_fits(Need(cores=8, gpus=4, memory_mb=16384)) is None
    assert allocator.never_fits(Need(cores=9)) == "needs 9 cores; this agent has 8"
    assert allocator.never_fits(Need(gpus=5)) == "needs 5 GPUs; this agent has 4"
    assert allocator.never_fits(Need(memory_mb=20000)) == (
        "needs 20000 MiB of memory; this agent has 16384 MiB"
    )
    unknown_memory = Allocator(NodeResources(cores=1), slots=1)
    assert unknown_memory.never_fits(Need(memory_mb=10**9)) is None
    assert unknown_memory.free().memory_mb is None
    with pytest.raises(ValueError, match="needs 5 GPUs"):
        allocator.acquire(Need(gpus=5), never)


def test_a_waiting_record_is_not_overtaken_by_later_ones_that_need_the_same(
    probe: Probe,
) -> None:
    allocator = Allocator(NODE, slots=4)
    held = allocator.acquire(Need(cores=1, gpus=3), never)
    assert held is not None
    results: dict[str, Grant | None] = {}

    def wait_for(label: str, need: Need) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.update({label: allocator.acquire(need, never)}), daemon=True
        )
        thread.start()
        return thread

    big = wait_for("big", Need(cores=1, gpus=2))
    probe.wait_until(lambda: allocator.waiting == 1, what="big to queue")
    # One GPU is free, yet a later 1-GPU record must not take it from the 2-GPU one...
    small = wait_for("small", Need(cores=1, gpus=1))
    probe.wait_until(lambda: allocator.waiting == 2, what="small to queue")
    assert results == {}
    assert allocator.shortfall(Need(gpus=1)) == (
        "needs 2 cores, 1 GPUs, 0 MiB; free: 5 cores, 0 GPUs, 16384 MiB (2 run(s) wait before it)"
    )
    # ...while one that needs no GPU uses an idle core at once (the waiters keep theirs).
    cpu_only = allocator.acquire(Need(cores=5), never)
    assert cpu_only is not None and cpu_only.gpus == ()
    assert allocator.free() == wire.Resources(cores=0, gpus=0, memory_mb=16384)
    assert allocator.shortfall(Need(cores=0.5)) is not None
    allocator.release(held)
    big.join(15)
    small.join(15)
    assert results["big"] is not None and results["small"] is not None
    assert set(results["big"].gpus).isdisjoint(results["small"].gpus)
    assert allocator.waiting == 0


def test_acquire_gives_up_when_asked(probe: Probe) -> None:
    allocator = Allocator(NODE, slots=1)
    assert allocator.acquire(Need(cores=8), never) is not None
    stop = threading.Event()
    results: list[Grant | None] = []
    thread = threading.Thread(
        target=lambda: results.append(allocator.acquire(Need(), stop.is_set)), daemon=True
    )
    thread.start()
    stop.set()
    thread.join(15)
    assert results == [None]
    assert allocator.free().cores == 0  # the abandoned wait reserves nothing any more
    assert allocator.shortfall(Need(cores=1)) is not None


def test_shortfall_describes_what_is_free() -> None:
    allocator = Allocator(NODE, slots=4)
    assert allocator.shortfall(Need(gpus=4)) is None
    assert allocator.acquire(Need(cores=6, gpus=3, memory_mb=1000), never) is not None
    assert allocator.shortfall(Need(cores=4, gpus=2)) == (
        "needs 4 cores, 2 GPUs, 0 MiB; free: 2 cores, 1 GPUs, 15384 MiB"
    )


def test_grant_environment() -> None:
    grant = Grant(cores=2.5, gpus=("1", "3"), memory_mb=512)
    assert grant.environment(gpus_managed=True) == {
        "OMP_NUM_THREADS": "2",
        "FARMHAND_CORES": "2.5",
        "FARMHAND_GPUS": "2",
        "CUDA_VISIBLE_DEVICES": "1,3",
        "FARMHAND_MEMORY_MB": "512",
    }
    small = Grant(cores=0.25).environment(gpus_managed=True)
    assert small["OMP_NUM_THREADS"] == "1" and small["CUDA_VISIBLE_DEVICES"] == ""
    # An agent without GPUs leaves CUDA_VISIBLE_DEVICES as the command inherits it.
    assert "CUDA_VISIBLE_DEVICES" not in Grant(cores=1).environment(gpus_managed=False)
