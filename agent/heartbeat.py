"""The agent's heartbeat: one request per interval renews every lease the agent holds.

It runs on its own thread so that slow work (staging, long commands, a report that is
retrying) never delays a renewal (invariant 6), and it never dies: a failed beat is logged
and the next one is tried on schedule.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from farmhand.agent import wire
from farmhand.agent.client import ApiError, FarmhandClient, ServerUnavailable

__all__ = ["HeartbeatThread"]

log = logging.getLogger("farmhand.agent")


class HeartbeatThread(threading.Thread):
    """Every `interval` seconds: `client.heartbeat(agent_id, held_run_ids())`, then
    `on_cancel(run_id)` for each run the server cancelled and `on_lost(run_id)` for each
    lease that is no longer this agent's."""

    def __init__(
        self,
        client: FarmhandClient,
        agent_id: int,
        interval: float,
        held_run_ids: Callable[[], Iterable[int]],
        on_cancel: Callable[[int], object],
        on_lost: Callable[[int], object],
        *,
        name: str = "farmhand-heartbeat",
    ):
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, not {interval!r}")
        super().__init__(name=name, daemon=True)
        self.client = client
        self.agent_id = agent_id
        self.interval = interval
        self.held_run_ids = held_run_ids
        self.on_cancel = on_cancel
        self.on_lost = on_lost
        self.beats = 0  #: heartbeats the server acknowledged
        self.failures = 0  #: heartbeats that failed
        self.last_ack: wire.HeartbeatAck | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        """Beat on a fixed schedule until `stop()`; a slow beat does not shift the schedule."""
        due = time.monotonic() + self.interval
        while not self._stopped.wait(max(0.0, due - time.monotonic())):
            self.beat()
            due += self.interval
            now = time.monotonic()
            if due < now:  # a beat took longer than an interval: beat again at once
                due = now

    def stop(self, timeout: float | None = None) -> None:
        """End the thread after the beat in progress (if any); wait up to `timeout` for it."""
        self._stopped.set()
        if timeout is not None and self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called."""
        return self._stopped.is_set()

    def beat(self) -> wire.HeartbeatAck | None:
        """Send one heartbeat now and dispatch its cancels and losses; None if it failed."""
        try:
            run_ids = sorted(set(self.held_run_ids()))
            ack = self.client.heartbeat(self.agent_id, run_ids, timeout=max(self.interval, 5.0))
        except ServerUnavailable as exc:
            self.failures += 1
            log.warning("heartbeat failed, will retry in %.1fs: %s", self.interval, exc)
            return None
        except ApiError as exc:
            self.failures += 1
            log.warning("heartbeat rejected, will retry in %.1fs: %s", self.interval, exc)
            return None
        except Exception:
            self.failures += 1
            log.exception("heartbeat failed unexpectedly, will retry in %.1fs", self.interval)
            return None
        self.beats += 1
        self.last_ack = ack
        for run_id in ack.cancel:
            self._dispatch(self.on_cancel, run_id, "cancel")
        for run_id in ack.lost:
            self._dispatch(self.on_lost, run_id, "lost")
        return ack

    @staticmethod
    def _dispatch(callback: Callable[[int], object], run_id: int, what: str) -> None:
        try:
            callback(run_id)
        except Exception:
            log.exception("handling %s for run %d failed", what, run_id)
