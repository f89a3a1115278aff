"""The crew runs every task at once, on reused threads, and lets idle threads go."""

from __future__ import annotations

import threading
import time

import pytest

from farmhand.runtime.resources.crew import Crew


def test_tasks_run_at_once_each_on_a_thread_of_its_own_while_busy() -> None:
    crew = Crew("t-busy")
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        gate.wait(30)

    tasks = [crew.task(blocked, f"b{i}") for i in range(5)]
    for task in tasks:
        task.start()
    for _ in tasks:  # none waits behind another: all five are running together
        assert started.acquire(timeout=30)
    assert crew.threads == 5 and all(task.is_alive() for task in tasks)
    gate.set()
    for task in tasks:
        task.join(30)
    assert not any(task.is_alive() for task in tasks)


def test_a_finished_tasks_thread_takes_the_next_one() -> None:
    crew = Crew("t-reuse")
    names: list[str] = []
    for i in range(20):  # one after another: one thread does them all
        task = crew.task(lambda: names.append(threading.current_thread().name), f"r{i}")
        task.start()
        task.join(30)
        assert not task.is_alive()
        began = time.monotonic()
        while crew.idle != 1:  # back in line for the next task
            assert time.monotonic() - began < 30, "the thread never went idle"
            time.sleep(0.001)
    assert len(names) == 20 and set(names) == {"t-reuse-1"}
    assert crew.threads == 1


def test_idle_threads_end_and_a_new_task_starts_a_new_one() -> None:
    crew = Crew("t-idle", idle_exit=0.05)
    first = crew.task(lambda: None, "first")
    first.start()
    first.join(30)
    began = time.monotonic()
    while crew.threads:
        assert time.monotonic() - began < 30, "the idle thread never ended"
        time.sleep(0.01)
    assert "t-idle-1" not in {t.name for t in threading.enumerate()}
    ran = threading.Event()
    second = crew.task(ran.set, "second")
    second.start()
    assert ran.wait(30) and crew.threads <= 1


def test_a_task_that_raises_is_over_and_the_thread_goes_on() -> None:
    crew = Crew("t-raise")

    def boom() -> None:
        raise RuntimeError("boom")

    failing = crew.task(boom, "failing")
    failing.start()
    failing.join(30)
    assert not failing.is_alive()
    ran = threading.Event()
    crew.task(ran.set, "after").start()
    assert ran.wait(30) and crew.threads == 1


def test_a_task_starts_once_and_joins_only_once_started() -> None:
    crew = Crew("t-misuse")
    task = crew.task(lambda: None, "once")
    with pytest.raises(RuntimeError, match="never started"):
        task.join(0)
    task.start()
    with pytest.raises(RuntimeError, match="started already"):
        task.start()
    task.join(30)
