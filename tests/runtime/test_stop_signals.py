"""A command that ends on the batch system's stop signal is seen as stopped, even when the
agent's own handler for that signal runs late (it waits for the main thread)."""

from __future__ import annotations

import os
import select
import signal
import threading
import time

from farmhand.runtime.context import StopState


def test_an_attempt_waits_for_the_handler_of_a_signal_that_already_arrived() -> None:
    stop = StopState()

    def late_handler(signum: int, frame: object) -> None:
        time.sleep(0.3)  # the main thread was busy: the handler runs well after the arrival
        stop.request("received SIGUSR1")
        stop.signal_handled()

    previous = signal.signal(signal.SIGUSR1, late_handler)
    previous_fd = signal.set_wakeup_fd(-1)
    try:
        stop.watch_signals()
        arrivals = stop._arrivals
        assert arrivals is not None
        seen: list[bool] = []

        def attempt() -> None:
            # The batch system signals the whole job step: the agent ...
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
            # ... and the command, which ends; by the time its end is seen the signal has
            # arrived at the agent (its wakeup byte is written), not yet handled.
            watch = select.poll()
            watch.register(arrivals, select.POLLIN)
            assert watch.poll(30_000), "the signal never arrived"
            stop.await_signals()  # what the attempt does when its command ended
            seen.append(stop.requested)

        thread = threading.Thread(target=attempt)
        thread.start()
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.05)  # the main thread runs the handler here
        assert seen == [True]
        assert not watch_readable(arrivals)  # handled: later attempts do not wait
    finally:
        signal.signal(signal.SIGUSR1, previous)
        fd = signal.set_wakeup_fd(previous_fd)
        os.close(fd)


def test_without_a_watch_nothing_waits() -> None:
    stop = StopState()
    began = time.monotonic()
    stop.await_signals(timeout=30)
    assert time.monotonic() - began < 5 and not stop.requested


def watch_readable(fd: int) -> bool:
    """Whether `fd` has bytes to read now."""
    watch = select.poll()
    watch.register(fd, select.POLLIN)
    return bool(watch.poll(0))
