"""The LISTEN/NOTIFY relay on a real PostgreSQL: coalescing, carrying counts, ignoring its own
messages, and reconnecting after its connections are terminated."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from fastapi.testclient import TestClient

from farmhand.server.queue.waking.relay import CHANNEL, Relay, connect_params
from farmhand.server.queue.waking.wakeups import Wakeup
from farmhand.server.settings import Settings
from tests.support.databases import PostgresDatabase, require_postgres
from tests.support.pg_backends import relay_backend, sql, terminate


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (this module is PostgreSQL-only)."""
    require_postgres()
    database = PostgresDatabase()
    yield database.url
    database.drop()


def backend_pid(url: str, role: str, query: str = "") -> int | None:
    """This process's relay connection `role` (with a last query like `query`)."""
    return relay_backend(url, role, os.getpid(), query)


async def until(condition: Callable[[], object], timeout: float = 20.0) -> object:
    """Poll `condition` (it may block briefly) until truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


class Listener:
    """A plain LISTEN connection on its own thread, recording (time, payload) of each message."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(**connect_params(url, "test"), autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for note in self.conn.notifies(timeout=0.05):
                self.got.append((time.monotonic(), note.payload))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


def test_a_burst_of_notifies_sends_a_few_coalesced_messages(pg_url: str) -> None:
    interval = 0.2
    listener = Listener(pg_url)

    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        relay = Relay(wakeup, pg_url, interval=interval)
        relay.start()
        started = time.monotonic()

        poked: list[float] = []

        def submissions(_: int) -> None:  # one worker thread committing submission after another
            for _ in range(125):
                poked.append(time.monotonic())
                wakeup.notify()
                time.sleep(0.002)

        def burst() -> None:  # 1000 submissions on 8 threads, over a few tenths of a second
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(submissions, range(8)))

        await asyncio.to_thread(burst)
        # The trailing send: a message that left after the last notify() began.
        await until(lambda: listener.got and listener.got[-1][0] > max(poked))
        await relay.stop()
        ended = listener.got[-1][0]
        assert {payload for _, payload in listener.got} == {relay.origin}
        assert 1 <= len(listener.got) <= (ended - started) / interval + 1

    try:
        asyncio.run(main())
    finally:
        listener.close()


def test_listener_wakes_on_other_replicas_messages_only(pg_url: str) -> None:
    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        relay = Relay(wakeup, pg_url)
        relay.start()
        await until(lambda: backend_pid(pg_url, "listen", query="LISTEN"))
        await until(lambda: wakeup.generation == 1)  # the wake after connecting
        waiter = asyncio.create_task(wakeup.wait(30))
        # Its own message first, then another replica's, on one connection: delivered in order.
        await asyncio.to_thread(
            sql, pg_url, "SELECT pg_notify(%s, %s), pg_notify(%s, 'other')",
            CHANNEL, relay.origin, CHANNEL,
        )  # fmt: skip
        assert await waiter is True
        await until(lambda: relay.received == 2)
        assert wakeup.generation == 2  # woken once: its own message was ignored
        await relay.stop()

    asyncio.run(main())


def test_counts_travel_summed_and_wake_that_many_waiters_on_other_replicas(pg_url: str) -> None:
    """A submit of 2 records here wakes 2 claims on another replica, not all of them; a notify
    without a count (or an old replica's payload) wakes every one. Mutation caught: the
    listener waking every waiter whatever the count."""
    listener = Listener(pg_url)

    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        relay = Relay(wakeup, pg_url, interval=0.2)
        relay.start()
        await until(lambda: backend_pid(pg_url, "listen", query="LISTEN"))
        await until(lambda: wakeup.generation == 1)  # the wake after connecting
        # The sender: counts that meet in one quiet interval travel as their sum.
        for count in (2, 1, 3):
            wakeup.notify(count)
        await until(lambda: sum(int(p.split()[1]) for _, p in listener.got) == 6)
        assert all(p.split()[0] == relay.origin for _, p in listener.got)
        # The listener: another replica's count wakes that many here, longest-waiting first.
        waiters = [asyncio.create_task(wakeup.wait(30)) for _ in range(5)]
        await until(lambda: wakeup.waiting == 5)
        await asyncio.to_thread(sql, pg_url, "SELECT pg_notify(%s, 'other 2')", CHANNEL)
        await until(lambda: sum(w.done() for w in waiters) == 2)
        assert [w.done() for w in waiters] == [True, True, False, False, False]
        assert wakeup.waiting == 3
        await asyncio.to_thread(sql, pg_url, "SELECT pg_notify(%s, 'other')", CHANNEL)
        assert await asyncio.gather(*waiters) == [True] * 5
        await relay.stop()

    try:
        asyncio.run(main())
    finally:
        listener.close()


def test_listener_reconnects_after_its_connection_is_terminated(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="farmhand.server.queue.waking.relay")

    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        relay = Relay(wakeup, pg_url)
        relay.start()
        old = await until(lambda: backend_pid(pg_url, "listen", query="LISTEN"))
        await asyncio.to_thread(terminate, pg_url, old)
        new = await until(
            lambda: (p := backend_pid(pg_url, "listen", query="LISTEN")) not in (None, old) and p
        )
        assert new != old
        waiter = asyncio.create_task(wakeup.wait(30))
        await asyncio.to_thread(sql, pg_url, "SELECT pg_notify(%s, 'other')", CHANNEL)
        assert await waiter is True
        await relay.stop()

    asyncio.run(main())
    messages = [
        r.getMessage() for r in caplog.records if r.name == "farmhand.server.queue.waking.relay"
    ]
    assert len([m for m in messages if "LISTEN connection to PostgreSQL failed" in m]) == 1
    assert "LISTEN connection to PostgreSQL is back" in messages


def test_sender_replaces_a_terminated_connection_without_losing_the_message(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="farmhand.server.queue.waking.relay")
    listener = Listener(pg_url)

    async def main() -> None:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        relay = Relay(wakeup, pg_url)
        relay.start()
        wakeup.notify()
        await until(lambda: len(listener.got) == 1)
        old = await until(lambda: backend_pid(pg_url, "notify"))
        await asyncio.to_thread(terminate, pg_url, old)
        await until(lambda: backend_pid(pg_url, "notify") is None)
        wakeup.notify()
        await until(lambda: len(listener.got) == 2)
        assert backend_pid(pg_url, "notify") not in (None, old)
        await relay.stop()

    try:
        asyncio.run(main())
    finally:
        listener.close()
    # A connection that died while idle is replaced at once: that is no outage.
    assert not [r for r in caplog.records if r.name == "farmhand.server.queue.waking.relay"]


def test_wakeups_are_relayed_only_on_postgresql_with_listen_notify_on() -> None:
    pg = "postgresql+psycopg://u@db:5432/farmhand"
    direct = "postgresql://u@db-direct:5432/farmhand"
    assert Settings.from_env({}).resolved_notify_url is None  # SQLite: one process
    assert Settings.from_env({"FARMHAND_DATABASE_URL": pg}).resolved_notify_url == pg
    off = {"FARMHAND_DATABASE_URL": pg, "FARMHAND_LISTEN_NOTIFY": "false"}
    assert Settings.from_env(off).resolved_notify_url is None
    elsewhere = {"FARMHAND_DATABASE_URL": pg, "FARMHAND_NOTIFY_URL": direct}
    assert Settings.from_env(elsewhere).resolved_notify_url == direct
    params = connect_params(direct, "listen")
    assert (params["host"], params["dbname"], params["user"]) == ("db-direct", "farmhand", "u")
    assert params["application_name"] == f"farmhand-listen-{os.getpid()}"


def test_the_app_starts_a_relay_on_postgresql_only(backend: str, api: TestClient) -> None:
    relay = api.app.state.relay
    assert (relay is not None) == (backend == "postgresql")
