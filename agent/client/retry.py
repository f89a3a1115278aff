"""Retrying a call while the server is unreachable: jittered exponential backoff."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from farmhand.client.api import ApiError, ServerUnavailable

__all__ = ["Backoff", "is_transient", "retry_unavailable"]

log = logging.getLogger("farmhand.agent")

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: the server was unreachable or answered 5xx."""
    return isinstance(exc, ServerUnavailable) or (isinstance(exc, ApiError) and exc.status >= 500)


class Backoff:
    """Growing pauses with jitter: the ceiling starts at `first` and doubles up to `cap`;
    each pause is drawn uniformly from the ceiling's upper half, so that many agents that
    hit the same outage (or went idle together) do not come back in step."""

    def __init__(self, first: float = 0.5, cap: float = 30.0):
        if first < 0 or cap < 0:
            raise ValueError(f"backoff delays must not be negative: first={first}, cap={cap}")
        self.first = min(first, cap)
        self.cap = cap
        self._ceiling = self.first

    def next(self) -> float:
        """The next pause; the one after it is up to twice as long (never above `cap`)."""
        pause = random.uniform(self._ceiling / 2, self._ceiling)
        self._ceiling = min(self.cap, self._ceiling * 2)
        return pause

    def reset(self) -> None:
        """Start again from `first` (the call succeeded, or work arrived)."""
        self._ceiling = self.first


def retry_unavailable(
    call: Callable[[], T],
    *,
    what: str,
    deadline: float,
    interrupted: threading.Event | None = None,
    give_up: Callable[[], bool] | None = None,
    first_delay: float = 0.5,
    max_delay: float = 30.0,
) -> T:
    """`call()`, retried while the server is unreachable or answers 5xx (`is_transient`),
    for up to `deadline` seconds. Only for calls that are safe to repeat.

    Pauses follow `Backoff(first_delay, max_delay)`. Re-raises the last error once the
    deadline passes, `interrupted` is set or `give_up()` is true; any other exception (4xx
    included) propagates at once.
    """
    ends = time.monotonic() + deadline
    backoff = Backoff(first_delay, max_delay)
    while True:
        try:
            return call()
        except (ServerUnavailable, ApiError) as exc:
            if not is_transient(exc):
                raise
            left = ends - time.monotonic()
            stopped = interrupted is not None and interrupted.is_set()
            if left <= 0 or stopped or (give_up is not None and give_up()):
                raise
            pause = min(left, backoff.next())
            log.warning("%s: server unavailable, retrying in %.1fs: %s", what, pause, exc)
            if interrupted is not None:
                interrupted.wait(pause)
            else:
                time.sleep(pause)
