"""Retrying while the server is unreachable: the schedule and when it gives up."""

from __future__ import annotations

import threading
import time

import pytest

from farmhand.client import ApiError, Conflict, ServerUnavailable
from farmhand.client.retry import Backoff, is_transient, retry_unavailable


class Flaky:
    """Raises ServerUnavailable `failures` times, then returns "ok"; records call times."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls: list[float] = []

    def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise ServerUnavailable("down")
        return "ok"


class Pauses(threading.Event):
    """An event that is never set and records each pause instead of sleeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.pauses.append(timeout)
        return False


def test_retries_with_growing_jittered_pauses_until_the_server_answers() -> None:
    call, pauses = Flaky(failures=5), Pauses()
    assert retry_unavailable(call, what="t", deadline=600, interrupted=pauses) == "ok"
    assert len(call.calls) == 6
    for pause, ceiling in zip(pauses.pauses, [0.5, 1, 2, 4, 8], strict=True):
        assert ceiling / 2 <= pause <= ceiling


def test_pauses_are_capped_at_max_delay() -> None:
    call, pauses = Flaky(failures=12), Pauses()
    retry_unavailable(call, what="t", deadline=600, interrupted=pauses)
    assert len(pauses.pauses) == 12
    assert all(15 <= pause <= 30 for pause in pauses.pauses[7:])  # 0.5 * 2**6 > 30


def test_gives_up_after_the_deadline() -> None:
    call = Flaky(failures=10**6)
    with pytest.raises(ServerUnavailable):
        retry_unavailable(call, what="t", deadline=0.2, first_delay=0.01)
    assert 2 <= len(call.calls) < 1000


def test_gives_up_when_interrupted_or_told_to() -> None:
    interrupted = threading.Event()
    interrupted.set()
    call = Flaky(failures=10**6)
    with pytest.raises(ServerUnavailable):
        retry_unavailable(call, what="t", deadline=60, interrupted=interrupted)
    assert len(call.calls) == 1
    call = Flaky(failures=10**6)
    with pytest.raises(ServerUnavailable):
        retry_unavailable(
            call, what="t", deadline=60, give_up=lambda: len(call.calls) >= 3, first_delay=0.01
        )
    assert len(call.calls) == 3


def test_an_interrupt_cuts_a_long_pause_short() -> None:
    interrupted = threading.Event()
    call = Flaky(failures=10**6)
    timer = threading.Timer(0.2, interrupted.set)
    timer.start()
    try:
        with pytest.raises(ServerUnavailable):
            retry_unavailable(
                call, what="t", deadline=600, interrupted=interrupted, first_delay=60, max_delay=60
            )
    finally:
        timer.cancel()
    assert len(call.calls) == 2  # the 30-60s pause ended when the event was set


def test_other_errors_are_not_retried() -> None:
    calls = []

    def refuse() -> None:
        calls.append(1)
        raise Conflict(409, "stale lease")

    with pytest.raises(Conflict):
        retry_unavailable(refuse, what="t", deadline=60)
    assert calls == [1]


def test_server_errors_are_retried_but_client_errors_are_not() -> None:
    answers: list[Exception] = [ApiError(503, "busy"), ApiError(500, "database is locked")]

    def flaky_server() -> str:
        if answers:
            raise answers.pop(0)
        return "ok"

    pauses = Pauses()
    assert retry_unavailable(flaky_server, what="t", deadline=60, interrupted=pauses) == "ok"
    assert len(pauses.pauses) == 2
    assert is_transient(ServerUnavailable("down")) and is_transient(ApiError(502, "bad gateway"))
    assert not is_transient(Conflict(409, "stale")) and not is_transient(ApiError(422, "bad"))


def test_backoff_doubles_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=1.0, cap=10.0)
    pauses = [backoff.next() for _ in range(7)]
    for pause, ceiling in zip(pauses, [1, 2, 4, 8, 10, 10, 10], strict=True):
        assert ceiling / 2 <= pause <= ceiling
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0
    assert Backoff(first=5.0, cap=2.0).next() <= 2.0  # the cap wins over the first pause
    assert Backoff(first=0.0, cap=0.0).next() == 0.0
    with pytest.raises(ValueError, match="must not be negative"):
        Backoff(first=-1.0)
