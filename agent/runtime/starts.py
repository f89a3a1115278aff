"""Run starts, off the critical path: an attempt hands its start over and launches its command
at once; one thread sends what gathered meanwhile in one request (`POST /runs/starts`),
`LINGER` seconds after the oldest of them was handed over.

A command that ends within that time takes its start back (`withdraw`): the start then
travels with the run's report (its `started_at`), and a short command costs no start request
at all. Otherwise the server sees the run go claimed → running a request later than the
command began, never after its result: an attempt waits for its start's answer before it
reports (`Ticket`). A start the server refuses (the lease is gone: cancelled, expired) drops
the attempt's result, as a refused start used to stop the command before it ran. A start
that cannot reach the server is not retried: its result must reach the durable outbox now,
not after the server is back (invariant 3), and a report is accepted from `claimed` too;
that run shows no start.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from farmhand import wire
from farmhand.client import ApiError, FarmhandClient, ServerUnavailable
from farmhand.client.retry import is_transient

__all__ = ["LINGER", "Starts", "Ticket"]

#: Seconds a start waits before it is sent, for more to join it or for its command to end.
LINGER = 0.2

log = logging.getLogger("farmhand.agent")


class Ticket:
    """One start's answer, once the server gave it: `refused` holds why it said no."""

    def __init__(self) -> None:
        self.refused: str | None = None
        self.started_at = datetime.now(timezone.utc)  #: when the command was started
        self.handed = time.monotonic()
        self._settled = threading.Event()

    def settle(self, refused: str | None) -> None:
        self.refused = refused
        self._settled.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the answer; False if `timeout` passed first."""
        return self._settled.wait(timeout)


class Starts:
    """The agent's start sender (see the module docstring)."""

    def __init__(self, client: FarmhandClient, linger: float = LINGER):
        self.client = client
        self.linger = linger
        self._pending: list[tuple[wire.Lease, Ticket]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="farmhand-starts", daemon=True)

    def start(self) -> None:
        """Begin sending."""
        self._thread.start()

    def send(self, lease: wire.Lease) -> Ticket:
        """Queue the start of `lease`'s run; the ticket settles once the server answered."""
        ticket = Ticket()
        with self._cond:
            if self._closed:
                ticket.settle(None)  # nothing sends any more: report as if unreachable
                return ticket
            self._pending.append((lease, ticket))
            if len(self._pending) == 1:  # later ones go at the first one's time: no wake-up
                self._cond.notify()
        return ticket

    def withdraw(self, ticket: Ticket) -> bool:
        """Take back a start that was not sent yet (True): the run's report carries it
        (`ticket.started_at`). False when it is on its way: wait for the ticket instead."""
        with self._cond:
            for index, (_, pending) in enumerate(self._pending):
                if pending is ticket:
                    del self._pending[index]
                    ticket.settle(None)
                    return True
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop; tickets still open settle as unreachable."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            left, self._pending = self._pending, []
        for _, ticket in left:
            ticket.settle(None)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                while self._pending and not self._closed:
                    left = self._pending[0][1].handed + self.linger - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)  # more may join; a command that ends withdraws
                if not self._pending:
                    if self._closed:
                        return
                    continue
                batch = self._pending[: wire.MAX_CLAIM * 4]
                del self._pending[: len(batch)]
            self._send(batch)

    def _send(self, batch: list[tuple[wire.Lease, Ticket]]) -> None:
        items = [wire.RunStartItem(run_id=lease.run_id, token=lease.token) for lease, _ in batch]
        try:
            answers = self.client.start_many(items)
        except (ServerUnavailable, ApiError) as exc:
            if isinstance(exc, ServerUnavailable) or is_transient(exc):
                log.info("could not tell the server of %d start(s): %s", len(batch), exc)
                why = None  # unknown: the reports go on (see the module docstring)
            else:
                why = str(exc)  # the whole request refused: each start is refused
            for _, ticket in batch:
                ticket.settle(why)
            return
        for (_, ticket), answer in zip(batch, answers, strict=True):
            ticket.settle(None if answer.ack is not None else _why(answer))


def _why(answer: wire.RunReportAnswer) -> str:
    return answer.error.detail if answer.error is not None else "no answer for it"
