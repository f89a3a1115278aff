"""The two kinds of write transaction routes open: an ORM session and a Core connection."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from farmhand.server import db as databases
from farmhand.server.db import INLINE_MAX_ITEMS, Database, connection_of
from farmhand.server.errors import Conflict
from farmhand.server.tables import Campaign
from tests.support import pg_backends

CAMPAIGN = Campaign.__table__


def campaigns(db: Database) -> int:
    with db.read() as s:
        return s.execute(select(func.count()).select_from(CAMPAIGN)).scalar_one()


def test_write_core_commits_at_the_end_and_rolls_back_on_error(db: Database) -> None:
    with db.write_core() as conn:
        conn.execute(insert(CAMPAIGN).values(name="kept", version=1, defaults={}))
    assert campaigns(db) == 1
    with pytest.raises(RuntimeError), db.write_core() as conn:
        conn.execute(insert(CAMPAIGN).values(name="dropped", version=1, defaults={}))
        raise RuntimeError("the route failed")
    assert campaigns(db) == 1
    with db.write() as s:  # data functions take either kind
        assert connection_of(s) is s.connection()
    with db.write_core() as conn:
        assert connection_of(conn) is conn


def test_write_core_takes_the_sqlite_write_lock_up_front(tmp_path: Path) -> None:
    """SQLite only: PostgreSQL locks rows, not the database."""
    db = Database(f"sqlite:///{tmp_path / 'farmhand.db'}")
    SQLModel.metadata.create_all(db.engine)
    other = sqlite3.connect(tmp_path / "farmhand.db", timeout=0, isolation_level=None)
    try:
        # BEGIN IMMEDIATE: the lock is held before the first statement, so another writer
        # is refused at once instead of meeting "database is locked" half-way.
        with db.write_core(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
        db.dispose()


_names = itertools.count()


def adding(threads: list[int]) -> Callable[[Connection], str]:
    """A transaction's work: add a campaign, note the thread it ran on."""

    def work(conn: Connection) -> str:
        threads.append(threading.get_ident())
        conn.execute(insert(CAMPAIGN).values(name=f"c{next(_names)}", version=1, defaults={}))
        return "answer"

    return work


def sqlite_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'farmhand.db'}")
    SQLModel.metadata.create_all(db.engine)
    return db


def test_run_write_answers_once_committed_small_ones_on_the_loop_on_sqlite(db: Database) -> None:
    """On SQLite a small transaction runs on the event loop's thread (no hop); a big one,
    and every one on PostgreSQL, on the thread pool. Both have committed when they answer."""
    threads: list[int] = []

    async def both() -> list[str]:
        small = await db.run_write(adding(threads))
        assert campaigns(db) == 1  # committed before the answer
        big = await db.run_write(adding(threads), items=INLINE_MAX_ITEMS + 1)
        assert campaigns(db) == 2
        return [small, big]

    assert asyncio.run(both()) == ["answer", "answer"]
    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    assert threads[1] != loop_thread
    assert (threads[0] == loop_thread) == (db.dialect == "sqlite")


def test_run_read_sees_committed_rows_small_ones_on_the_loop_on_sqlite(db: Database) -> None:
    """A small read runs on the event loop's thread on SQLite (an idle long poll's agent
    check), a scanning one and every one on PostgreSQL on the thread pool; a refusal raised
    inside leaves the reading connection usable, and each read sees what committed before."""
    threads: list[int] = []

    def count(conn: Connection) -> int:
        threads.append(threading.get_ident())
        return conn.execute(select(func.count()).select_from(CAMPAIGN)).scalar_one()

    def refused(conn: Connection) -> int:
        count(conn)
        raise Conflict("refused after a read")

    async def reads() -> list[int]:
        before = await db.run_read(count)
        await db.run_write(adding([]))
        with pytest.raises(Conflict):
            await db.run_read(refused)
        return [before, await db.run_read(count), await db.run_read(count, small=False)]

    assert asyncio.run(reads()) == [0, 1, 1]
    loop_thread = threading.get_ident()
    on_loop = [thread == loop_thread for thread in threads]
    assert on_loop == ([True, True, True, False] if db.dialect == "sqlite" else [False] * 4)


def test_a_failed_write_on_the_loop_changes_nothing_and_the_next_runs_there(
    tmp_path: Path,
) -> None:
    db = sqlite_db(tmp_path)
    threads: list[int] = []

    def refused(conn: Connection) -> str:
        adding(threads)(conn)
        raise Conflict("refused after a write")

    async def two() -> None:
        with pytest.raises(Conflict):
            await db.run_write(refused)
        await db.run_write(adding(threads))

    try:
        asyncio.run(two())
        assert campaigns(db) == 1
        assert threads == [threading.get_ident()] * 2
    finally:
        db.dispose()


def test_run_write_waits_on_the_thread_pool_while_another_thread_writes(
    tmp_path: Path,
) -> None:
    """The loop never waits for the write lock: the transaction goes to a worker thread,
    which waits there, while the loop goes on."""
    db = sqlite_db(tmp_path)
    holding, let_go = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write_core():
            holding.set()
            assert let_go.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(30)
    threads: list[int] = []

    async def behind() -> str:
        task = asyncio.create_task(db.run_write(adding(threads)))
        began = time.monotonic()
        await asyncio.sleep(0.2)
        assert time.monotonic() - began < 5, "the event loop waited for the write lock"
        assert not task.done() and campaigns(db) == 0
        let_go.set()
        return await task

    try:
        assert asyncio.run(behind()) == "answer"
        assert campaigns(db) == 1 and threads[0] != threading.get_ident()
    finally:
        let_go.set()
        holder.join(30)
        db.dispose()


def test_run_write_waits_on_the_thread_pool_while_another_process_writes(
    tmp_path: Path,
) -> None:
    """SQLite's own lock held elsewhere (the CLI, a backup): the loop's BEGIN IMMEDIATE is
    refused at once, without sleeping in the busy handler, and a worker thread waits."""
    db = sqlite_db(tmp_path)
    other = sqlite3.connect(tmp_path / "farmhand.db", timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    threads: list[int] = []

    async def behind() -> str:
        task = asyncio.create_task(db.run_write(adding(threads)))
        began = time.monotonic()
        await asyncio.sleep(0.2)
        assert time.monotonic() - began < 5, "the event loop waited for SQLite's lock"
        assert not task.done()
        other.execute("ROLLBACK")
        return await task

    try:
        assert asyncio.run(behind()) == "answer"
        assert campaigns(db) == 1 and threads[0] != threading.get_ident()
        assert asyncio.run(db.run_write(adding(threads))) == "answer"  # the loop's again
        assert threads[1] == threading.get_ident()
    finally:
        other.close()
        db.dispose()


def test_the_loop_leaves_wal_checkpoints_to_the_thread_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint writes and syncs the database file: the loop's connection never runs
    one; every CHECKPOINT_EVERY of its commits, a worker thread does."""
    db = sqlite_db(tmp_path)
    monkeypatch.setattr(databases, "CHECKPOINT_EVERY", 3)
    done: list[int] = []
    real = db._checkpoint

    def checkpoint() -> None:
        real()
        done.append(threading.get_ident())

    monkeypatch.setattr(db, "_checkpoint", checkpoint)

    async def writes() -> int:
        for _ in range(6):
            await db.run_write(adding([]))
        for _ in range(300):
            if len(done) == 2:
                break
            await asyncio.sleep(0.01)
        assert db._loop_writer is not None
        return db._loop_writer.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()

    try:
        with caplog.at_level(logging.WARNING, logger="farmhand.server.db"):
            assert asyncio.run(writes()) == 0
        assert len(done) == 2 and threading.get_ident() not in done
        assert not caplog.records  # the checkpoints themselves succeeded
    finally:
        db.dispose()


def _backend_pid(db: Database) -> int:
    with db.read() as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(db: Database, pid: int) -> None:
    pg_backends.terminate(db.url, pid)  # from a connection of its own, as a restart would


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_cut_while_idle_is_replaced_before_a_request_sees_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(databases, "PING_IDLE_SECONDS", 0.0)  # any pause is idle here
    idle = Database(db.url)
    try:
        cut = _backend_pid(idle)
        _terminate(idle, cut)
        assert _backend_pid(idle) not in (cut, None)  # pinged, found dead, replaced: no error
    finally:
        idle.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_in_steady_use_is_not_pinged(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(databases, "PING_IDLE_SECONDS", 3600.0)  # however slow the machine
    busy = Database(db.url)
    try:
        cut = _backend_pid(busy)
        _terminate(busy, cut)
        # Used a moment ago: no ping, so this request meets the cut connection (a 5xx that
        # agents retry) and SQLAlchemy then replaces the pool's connections.
        with pytest.raises(OperationalError):
            _backend_pid(busy)
        assert _backend_pid(busy) != cut
    finally:
        busy.dispose()
