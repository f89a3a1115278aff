"""The database: one engine, and the two kinds of transaction routes open (read and write).

On SQLite (the embedded default) every write transaction starts with `BEGIN IMMEDIATE`, so a
writer takes the database lock up front instead of failing half-way with "database is locked";
within one server process writers also queue on a lock, so they wait in line rather than in
SQLite's sleeping busy handler. The database runs in WAL mode, so readers never block.

The agents' hot routes (claims, starts, reports) run their transaction with `run_write`: on
SQLite a small one runs on the event loop itself when no other writer holds or waits for the
lock, sparing the hop to the thread pool (see `run_write`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import ARRAY, bindparam, event, func, literal_column
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlmodel import Session, create_engine
from starlette.concurrency import run_in_threadpool

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: A pooled PostgreSQL connection unused for longer than this is pinged before it is used.
PING_IDLE_SECONDS = 1.0
#: The most items (records claimed, runs reported) a transaction run on the event loop may
#: hold: a bigger one (~90 µs an item) goes to the thread pool, where it does not hold up
#: every other request of the server.
INLINE_MAX_ITEMS = 64
#: The event loop's connection never checkpoints the WAL itself (a checkpoint writes the
#: database file and syncs it); every this many of its commits, the thread pool does.
CHECKPOINT_EVERY = 100

T = TypeVar("T")
log = logging.getLogger(__name__)


class WriteLock:
    """A lock that knows which threads wait for it: tests prove a writer queued behind another
    (`waiting`); the uncontended path costs one non-blocking acquire more than a bare lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting: set[int] = set()  # idents of the threads blocked in `acquire`

    def __enter__(self) -> None:
        if self._lock.acquire(blocking=False):
            return
        me = threading.get_ident()
        self.waiting.add(me)  # set.add and set.discard are atomic: no second lock needed
        try:
            self._lock.acquire()
        finally:
            self.waiting.discard(me)

    def __exit__(self, *_: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        """Whether a writer holds the lock."""
        return self._lock.locked()

    def try_acquire(self) -> bool:
        """Take the lock if it is free and no thread waits for it (a thread queued for it
        goes first), without waiting; True if taken (`release` it)."""
        return not self.waiting and self._lock.acquire(blocking=False)

    def release(self) -> None:
        """Give back a lock taken with `try_acquire`."""
        self._lock.release()


class Database:
    """Owns the engine; `read()` and `write()` hand out sessions inside one transaction."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
            }
            kwargs.update(pool_size=20, max_overflow=40)
        else:
            kwargs.update(pool_size=10, max_overflow=20)  # pinged when idle: _ping_when_idle
            # psycopg prepares a statement after 5 runs and PostgreSQL may then switch to a
            # generic plan that ignores the values (a seq scan for `key IN (...)`); our
            # statements are cheap to plan, so plan each with its values.
            kwargs["connect_args"] = {"prepare_threshold": None}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _ping_when_idle(self.engine, PING_IDLE_SECONDS)
        self._writer = self.engine.execution_options(farmhand_begin="IMMEDIATE")
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._write_lock = WriteLock() if self.is_sqlite else None
        self._core_writer: Connection | None = None  # SQLite: see `write_core`
        self._loop_writer: Connection | None = None  # SQLite: see `run_write`
        self._loop_reader: Connection | None = None  # SQLite: see `run_read`
        self._loop_commits = 0

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in a read transaction (rolled back at the end)."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction, committed when the block ends without error."""
        with self._write_lock or nullcontext():  # noqa: SIM117 - the lock must wrap the session
            with Session(self._writer, expire_on_commit=False) as session, session.begin():
                yield session

    @contextmanager
    def write_core(self) -> Iterator[Connection]:
        """A Core connection in a write transaction, committed when the block ends without
        error: for the hottest routes (claims, reports), whose statements cost less than an
        ORM session's bookkeeping (about 40 µs a transaction).

        On SQLite, where the write lock lets one writer in at a time anyway, every such
        transaction runs on one connection kept open under that lock: a pool checkout and
        checkin (with its reset) cost about as much as a claim's statements. A transaction
        that fails and leaves it unusable drops it: the next one starts on a fresh one."""
        if self._write_lock is None:
            with self._writer.begin() as connection:
                yield connection
            return
        with self._write_lock:
            if self._core_writer is None:
                self._core_writer = self._writer.connect()
            connection = self._core_writer
            try:
                with connection.begin():
                    yield connection
            except BaseException:
                if not _clean(connection):
                    self._core_writer = None
                    connection.close()
                raise

    async def run_write(self, work: Callable[[Connection], T], *, items: int = 1) -> T:
        """`work(connection)` in a `write_core` transaction; its result once committed.

        On SQLite a transaction of at most `INLINE_MAX_ITEMS` items runs right here, on the
        event loop, when no other writer of this process holds or waits for the write lock
        and no other process holds SQLite's: the hop to the thread pool and back cost more
        CPU than a small claim or report (~15 % of a claim+complete cycle). Anything else,
        and everything on PostgreSQL (whose statements wait on the network), runs on the
        thread pool. Either way the answer is built after the commit, so a 2xx still means
        committed."""
        if self._write_lock is not None and items <= INLINE_MAX_ITEMS:
            ran, result = self._write_inline(work)
            if ran:
                return result
        return await run_in_threadpool(self._write_core_of, work)

    async def run_read(self, work: Callable[[Connection], T], *, small: bool = True) -> T:
        """`work(connection)` on a connection in autocommit (each statement its own
        snapshot: for reads of one or two statements); its result.

        On SQLite a `small` read (a few index probes) runs right here, on the event loop's
        own reading connection: in WAL mode a read waits for no writer, and the hop to the
        thread pool and back costs more than such a read (an idle long poll's agent check).
        Should SQLite answer busy all the same, a read that may scan (not `small`), and
        everything on PostgreSQL run on the thread pool."""
        if self.is_sqlite and small:
            try:
                return self._read_inline(work)
            except OperationalError as exc:
                if not _busy(exc):
                    raise
        return await run_in_threadpool(self._read_core_of, work)

    def _read_inline(self, work: Callable[[Connection], T]) -> T:
        connection = self._loop_reader
        if connection is None:
            connection = self._loop_reader = self._autocommit.connect()
            connection.connection.driver_connection.execute("PRAGMA busy_timeout=0")
        try:
            with connection.begin():
                return work(connection)
        except BaseException:
            if not _clean(connection):
                self._loop_reader = None
                connection.invalidate()
                connection.close()
            raise

    def _read_core_of(self, work: Callable[[Connection], T]) -> T:
        # Each statement its own snapshot, enough for these reads: autocommit spares BEGIN
        # and COMMIT (on PostgreSQL two of a one-statement read's three round trips).
        with self._autocommit.connect() as connection:
            return work(connection)

    def _write_core_of(self, work: Callable[[Connection], T]) -> T:
        with self.write_core() as connection:
            return work(connection)

    def _write_inline(self, work: Callable[[Connection], T]) -> tuple[bool, T | None]:
        """(True, result) if `work` ran and committed on the calling thread; (False, None)
        without running it if that would wait for a lock."""
        assert self._write_lock is not None
        if not self._write_lock.try_acquire():
            return False, None
        try:
            connection = self._loop_writer or self._open_loop_writer()
            try:
                transaction = connection.begin()  # BEGIN IMMEDIATE, refused at once if busy
            except OperationalError as exc:
                self._drop_loop_writer()
                if _busy(exc):  # another process writes: wait for it on the thread pool
                    return False, None
                raise
            try:
                with transaction:
                    result = work(connection)
            except BaseException:
                if not _clean(connection):
                    self._drop_loop_writer()
                raise
        finally:
            self._write_lock.release()
        self._loop_commits += 1
        if self._loop_commits % CHECKPOINT_EVERY == 0:
            asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        return True, result

    def _open_loop_writer(self) -> Connection:
        """The event loop's connection: it never sleeps in SQLite's busy handler (the loop
        must not wait) and leaves WAL checkpoints (disk syncs) to the thread pool."""
        connection = self._writer.connect()
        driver = connection.connection.driver_connection
        driver.execute("PRAGMA busy_timeout=0")
        driver.execute("PRAGMA wal_autocheckpoint=0")
        self._loop_writer = connection
        return connection

    def _drop_loop_writer(self) -> None:
        """Discard the event loop's connection (after a failure, or at the end): invalidated,
        so its settings never reach the pool."""
        connection, self._loop_writer = self._loop_writer, None
        if connection is not None:
            connection.invalidate()
            connection.close()

    def _checkpoint(self) -> None:
        """Copy the WAL's committed pages into the database file, without waiting for
        readers or writers (SQLite's own automatic checkpoint, done off the event loop)."""
        try:
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                raw.close()
        except Exception:  # a missed checkpoint only lets the WAL grow until the next one
            log.warning("WAL checkpoint failed", exc_info=True)

    def dispose(self) -> None:
        """Close every pooled connection."""
        if self._write_lock is not None:
            with self._write_lock:
                if self._core_writer is not None:
                    self._core_writer.close()
                    self._core_writer = None
                self._drop_loop_writer()
        if self._loop_reader is not None:
            self._loop_reader.invalidate()  # its busy_timeout must not reach the pool
            self._loop_reader.close()
            self._loop_reader = None
        self.engine.dispose()


def _clean(connection: Connection) -> bool:
    """Whether a connection whose transaction failed was rolled back and may serve the
    next one (a refusal such as a stale lease leaves it so; a lost connection does not)."""
    return not connection.invalidated and not connection.in_transaction()


def _busy(exc: OperationalError) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY/LOCKED)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def connection_of(tx: Session | Connection) -> Connection:
    """The Core connection of the transaction a data function runs in (a route's `write()`
    session or its `write_core()` connection)."""
    return tx.connection() if isinstance(tx, Session) else tx


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """SQLAlchemy's `pool_pre_ping`, for connections back in the pool more than `idle`
    seconds only: a ping is a round trip before every request (about 11 % of the server's
    CPU per one-at-a-time claim and report, bench.inprocess), and a connection in steady
    use is known to work. One that fails its ping is replaced before the request sees it
    (a database restart while the server was idle). One that died less than `idle` seconds
    after its last use fails its request instead (5xx, which agents retry), and SQLAlchemy
    then replaces every connection of the pool from before the failure."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _note(dbapi_connection: Any, record: Any) -> None:
        record.info["farmhand_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("farmhand_idle_since")
        if since is None or time.monotonic() - since <= idle:
            return  # new, or in steady use
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # each statement its own transaction (`Database.run_read`)
        mode = options.get("farmhand_begin", "DEFERRED")
        # On the driver: SQLAlchemy's execution of the statement costs more than SQLite's
        # BEGIN (~5 % of a claim). Its errors are wrapped as SQLAlchemy's execution would.
        statement = f"BEGIN {mode}"
        try:
            connection.connection.driver_connection.execute(statement)
        except sqlite3.Error as exc:
            connection._handle_dbapi_exception(exc, statement, (), None, None)


def literal_in(column: Any, values: Iterable[str]) -> Any:
    """`column IN ('a', 'b')` with the values written inline, not bound.

    The planner can match a partial index (`WHERE state = 'ready'`) only against literals; a
    bound parameter hides the value from it. Use it only for our own enum values.
    """
    quoted = []
    for value in sorted(getattr(v, "value", v) for v in values):  # enum members or values
        if not value.isidentifier():
            raise ValueError(f"not a state name: {value!r}")
        quoted.append(literal_column(f"'{value}'"))
    if len(quoted) == 1:
        return column == quoted[0]
    return column.in_(quoted)


def unnest(**columns: Any) -> Any:
    """`unnest(:b_a, :b_b, …) AS v(a, b, …)` on PostgreSQL: many rows sent as one array per
    column, for `INSERT … SELECT` and `UPDATE … FROM`.

    The alternatives cost more there: an executemany is one statement per row, and psycopg
    parses a statement with more than 50 placeholders (a multi-row `VALUES`) in Python on
    every execution. `columns` maps each column name to its SQL type.
    """
    arrays = [bindparam(f"b_{name}", type_=ARRAY(kind)) for name, kind in columns.items()]
    return func.unnest(*arrays).table_valued(*columns).render_derived()


def execute_rows(
    connection: Any, sqlite_stmt: Any, postgresql_stmt: Any, rows: list[dict], **same: Any
) -> Any:
    """Run a statement for many rows (keys `b_<column>`; `same` holds the values shared by
    all): an executemany on SQLite (in-process, so cheap; an INSERT with RETURNING goes in
    multi-row batches), one array per column on PostgreSQL (`postgresql_stmt` reads them
    through `unnest(…)`). Returns the result (None when there are no rows)."""
    if not rows:
        return None
    if connection.dialect.name == "postgresql":
        arrays = {key: [row[key] for row in rows] for key in rows[0]}
        return connection.execute(postgresql_stmt, {**arrays, **same})
    return connection.execute(sqlite_stmt, [{**row, **same} for row in rows])
