"""Retrying a call while the server is unreachable: jittered exponential backoff."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from farmhand.agent.client import ApiError, ServerUnavailable

__all__ = ["is_transient", "retry_unavailable"]

log = logging.getLogger("farmhand.agent")

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: the server was unreachable or answered 5xx."""
    return isinstance(exc, ServerUnavailable) or (isinstance(exc, ApiError) and exc.status >= 500)


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

    Pauses start at `first_delay` and double up to `max_delay`, each drawn uniformly from
    its upper half so that many agents do not retry in step. Re-raises the last error once
    the deadline passes, `interrupted` is set or `give_up()` is true; any other exception
    (4xx included) propagates at once.
    """
    ends = time.monotonic() + deadline
    delay = first_delay
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
            pause = min(left, random.uniform(delay / 2, delay))
            log.warning("%s: server unavailable, retrying in %.1fs: %s", what, pause, exc)
            if interrupted is not None:
                interrupted.wait(pause)
            else:
                time.sleep(pause)
            delay = min(max_delay, delay * 2)
