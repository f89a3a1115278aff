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

from farmhand import wire
from farmhand.client import ApiError, FarmhandClient, ServerUnavailable

__all__ = ["HeartbeatThread"]

log = logging.getLogger("farmhand.agent")


class HeartbeatThread(threading.Thread):
    """Every `interval` seconds: `client.heartbeat(agent_id, held_run_ids(), status())`, then
    `on_cancel(run_id)` for each run the server cancelled and `on_lost(run_id)` for each
    lease that is no longer this agent's; `on_reconnect()` after the first beat that works
    following failures. `poke()` sends the next beat at once.

    `unneeded()`, when given, may skip a beat on the schedule (never a poked one): it says
    True while the server hears from the agent otherwise (an agent that holds no lease and
    whose claims the server counts as heartbeats)."""

    def __init__(
        self,
        client: FarmhandClient,
        agent_id: int,
        interval: float,
        held_run_ids: Callable[[], Iterable[int]],
        on_cancel: Callable[[int], object],
        on_lost: Callable[[int], object],
        *,
        status: Callable[[], wire.AgentStatus | None] | None = None,
        on_reconnect: Callable[[], object] | None = None,
        unneeded: Callable[[], bool] | None = None,
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
        self.status = status
        self.on_reconnect = on_reconnect
        self.unneeded = unneeded
        self.beats = 0  #: heartbeats the server acknowledged
        self.skipped = 0  #: beats on the schedule that `unneeded()` spared
        self.failures = 0  #: heartbeats that failed
        self.last_ack: wire.HeartbeatAck | None = None
        self.last_ok: float | None = None  #: monotonic time of the last acknowledged beat
        self.last_error: str | None = None  #: why the last beat failed; None once one works
        self._stopped = threading.Event()
        self._poked = threading.Event()

    def run(self) -> None:
        """Beat on a fixed schedule until `stop()`; a slow beat does not shift the schedule."""
        due = time.monotonic() + self.interval
        while True:
            self._poked.wait(max(0.0, due - time.monotonic()))
            if self._stopped.is_set():
                return
            poked = self._poked.is_set()
            if poked:
                self._poked.clear()
                due = time.monotonic()  # a poke moves the schedule to now
            if poked or not self._spared():
                self.beat()
            due += self.interval
            now = time.monotonic()
            if due < now:  # a beat took longer than an interval: beat again at once
                due = now

    def _spared(self) -> bool:
        """Whether `unneeded()` spares this beat (a failing one spares none)."""
        try:
            spared = self.unneeded is not None and self.unneeded()
        except Exception:
            log.exception("cannot tell whether a heartbeat is needed; sending it")
            return False
        self.skipped += spared
        return spared

    def poke(self) -> None:
        """Send a beat now (the status changed); safe from any thread."""
        self._poked.set()

    def stop(self, timeout: float | None = None) -> None:
        """End the thread after the beat in progress (if any); wait up to `timeout` for it."""
        self._stopped.set()
        self._poked.set()
        if timeout is not None and self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called."""
        return self._stopped.is_set()

    def beat(self) -> wire.HeartbeatAck | None:
        """Send one heartbeat now and dispatch its cancels and losses; None if it failed."""
        try:
            status = self.status() if self.status is not None else None
        except Exception:  # the leases matter more than the status: renew them without it
            log.exception("cannot tell the agent's status; heartbeat without it")
            status = None
        try:
            run_ids = sorted(set(self.held_run_ids()))
            ack = self.client.heartbeat(
                self.agent_id, run_ids, status=status, timeout=max(self.interval, 5.0)
            )
        except ServerUnavailable as exc:
            self._failed(exc)
            log.warning("heartbeat failed, will retry in %.1fs: %s", self.interval, exc)
            return None
        except ApiError as exc:
            self._failed(exc)
            log.warning("heartbeat rejected, will retry in %.1fs: %s", self.interval, exc)
            return None
        except Exception as exc:
            self._failed(exc)
            log.exception("heartbeat failed unexpectedly, will retry in %.1fs", self.interval)
            return None
        self.beats += 1
        self.last_ack = ack
        self.last_ok = time.monotonic()
        if self.last_error is not None and self.on_reconnect is not None:
            log.info("the server answers again")
            self.on_reconnect()
        self.last_error = None
        for run_id in ack.cancel:
            self._dispatch(self.on_cancel, run_id, "cancel")
        for run_id in ack.lost:
            self._dispatch(self.on_lost, run_id, "lost")
        return ack

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = str(exc) or type(exc).__name__

    @staticmethod
    def _dispatch(callback: Callable[[int], object], run_id: int, what: str) -> None:
        try:
            callback(run_id)
        except Exception:
            log.exception("handling %s for run %d failed", what, run_id)
