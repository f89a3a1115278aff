"""Wakeups across server replicas through PostgreSQL LISTEN/NOTIFY.

After a commit that may have made records claimable, routes call `Wakeup.notify()`; the relay
then sends `NOTIFY farmhand_ready` on its own autocommit connection — so the message leaves
after the commit, never inside a transaction that could roll back — at most once per
`NOTIFY_INTERVAL` with a trailing send (`Coalescer`), so a burst of a thousand submissions
costs a handful of messages. A second connection LISTENs; a notification from another replica
wakes this process's long-polling claims. The payload names the sending process, so a replica
ignores its own messages (`notify()` woke its waiters already), and how many records the
coalesced notifies made claimable: `<origin> <count>`, or `<origin>` alone for "wake every
waiter" (a notify without a count in the batch). Each replica that hears it wakes that many
of its own waiters, so a record wakes one claim per replica rather than every claim; the
claims that lose the race find nothing and wait again. A payload without a count (or one
this version cannot read) wakes every waiter, as before counts existed.

Either connection may drop. The sender reconnects on its next send and retries with backoff;
the listener reconnects with backoff and, once back, wakes every waiter, because messages sent
while it was away are gone. Each outage is logged once. Meanwhile claims still find work by
re-checking every `claim_poll_interval` — which is all there is with LISTEN/NOTIFY turned off
(`listen_notify=False`, for a transaction-mode pooler without a direct `notify_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

from farmhand.server.queue.waking.wakeups import Coalescer, Wakeup

log = logging.getLogger("farmhand.server.queue.waking.relay")

CHANNEL = "farmhand_ready"
#: Least seconds between two NOTIFYs from one process.
NOTIFY_INTERVAL = 0.05
#: Seconds between reconnection attempts (the last one repeats).
RECONNECT_DELAYS = (0.1, 0.5, 2.0, 5.0)
# TCP keepalives find a silently vanished peer (no RST) in about a minute instead of never.
_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def connect_params(url: str, role: str) -> dict[str, Any]:
    """psycopg connection parameters for an SQLAlchemy (or libpq) PostgreSQL URL.

    The connection is named `farmhand-<role>-<pid>` in `pg_stat_activity` unless the URL
    sets `application_name`.
    """
    libpq_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    named = {**_DEFAULTS, "application_name": f"farmhand-{role}-{os.getpid()}"}
    return {**named, **conninfo_to_dict(libpq_url)}


class _Outage:
    """Logs a connection's trouble once per outage, and its return."""

    def __init__(self, what: str, meanwhile: str) -> None:
        self.what = what
        self.meanwhile = meanwhile
        self.down = False

    def lost(self, exc: BaseException) -> None:
        if not self.down:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("%s failed (%s); %s until it is back", self.what, reason, self.meanwhile)
        self.down = True

    def back(self) -> None:
        if self.down:
            # A warning, like the outage: under uvicorn only farmhand's warnings reach the log.
            log.warning("%s is back", self.what)
        self.down = False


class Relay:
    """Carries one process's wakeups to the other replicas and theirs to it."""

    def __init__(self, wakeup: Wakeup, url: str, *, interval: float = NOTIFY_INTERVAL) -> None:
        self._wakeup = wakeup
        self._url = url
        #: The NOTIFY payload: who sent it.
        self.origin = uuid.uuid4().hex
        #: Notifications received, this process's own included (for metrics and tests).
        self.received = 0
        self._sender: psycopg.AsyncConnection | None = None
        #: Records made claimable since the last send; None: wake every waiter.
        self._owed: int | None = 0
        self._coalescer = Coalescer(self._send, interval, RECONNECT_DELAYS)
        self._tasks: list[asyncio.Task[None]] = []
        self._send_outage = _Outage(
            "NOTIFY to PostgreSQL", "other replicas find this one's records by polling"
        )
        self._listen_outage = _Outage(
            "LISTEN connection to PostgreSQL", "claims here find other replicas' records by polling"
        )

    def start(self) -> None:
        """Begin sending and listening (call it in the server's running loop)."""
        self._wakeup.relay_to(self._poke)
        self._tasks = [
            asyncio.create_task(self._coalescer.run(), name="farmhand-notify"),
            asyncio.create_task(self._listen(), name="farmhand-listen"),
        ]

    async def stop(self) -> None:
        """Stop both tasks and close both connections."""
        self._wakeup.relay_to(None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_sender()

    async def _connect(self, role: str) -> psycopg.AsyncConnection:
        # prepare_threshold=None: a pooler in front must not see server-side prepared statements.
        params = connect_params(self._url, role)
        return await psycopg.AsyncConnection.connect(
            autocommit=True, prepare_threshold=None, **params
        )

    async def _close_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                await sender.close()

    def _poke(self, count: int | None) -> None:
        """A local notify: owe the other replicas `count` more wakeups (None: all)."""
        self._owed = _added(self._owed, count)
        self._coalescer.poke()

    async def _send(self) -> bool:
        """One NOTIFY of everything owed; True when it went out (else it stays owed)."""
        owed, self._owed = self._owed, 0
        if await self._notify(owed):
            return True
        self._owed = _added(self._owed, owed)
        return False

    async def _notify(self, count: int | None) -> bool:
        payload = self.origin if count is None else f"{self.origin} {count}"
        # A connection idle since PostgreSQL restarted fails on first use: retry it once fresh.
        tries = 2 if self._sender is not None else 1
        problem: BaseException | None = None
        for _ in range(tries):
            try:
                if self._sender is None:
                    self._sender = await self._connect("notify")
                await self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except (psycopg.Error, OSError) as exc:
                problem = exc
                await self._close_sender()
                continue
            self._send_outage.back()
            return True
        assert problem is not None
        self._send_outage.lost(problem)
        return False

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async with await self._connect("listen") as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self._listen_outage.back()
                    # Whatever was sent while this connection was away is lost: re-check now.
                    self._wakeup.wake()
                    async for note in conn.notifies():
                        self.received += 1
                        origin, count = _parse(note.payload)
                        if origin != self.origin:
                            self._wakeup.wake(count)
                raise psycopg.OperationalError("the connection closed")
            except (psycopg.Error, OSError) as exc:
                self._listen_outage.lost(exc)
            delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
            failures += 1
            await asyncio.sleep(delay)


def _added(owed: int | None, count: int | None) -> int | None:
    """Wakeups owed after one more notify of `count`; None (all) absorbs any count."""
    return None if owed is None or count is None else owed + count


def _parse(payload: str) -> tuple[str, int | None]:
    """(origin, count) of a payload; count None (wake all) when it names none."""
    origin, _, count = payload.partition(" ")
    return origin, int(count) if count.isdigit() else None


def start_relay(wakeup: Wakeup, url: str | None) -> Relay | None:
    """Relay `wakeup` through the PostgreSQL at `url`; None (in-process only) without a URL."""
    if url is None:
        return None
    relay = Relay(wakeup, url)
    relay.start()
    return relay
