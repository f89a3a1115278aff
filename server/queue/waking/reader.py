"""Small reads on the event loop itself, on PostgreSQL: the quiet queue's agent check.

While the queue is quiet, an idle agent's long poll costs the server one read when it
arrives (`claim.admit`: the agent's refusals). Through SQLAlchemy that read hops to the
thread pool and back, which costs more CPU than the read (~300 µs against ~140 µs per check
on a 2-core machine, and the two threads then contend for the GIL). `LoopReader` runs such
a read on one psycopg `AsyncConnection` in autocommit instead, the statement compiled once
(`prepared`). It never makes a caller wait for another's read or for a broken connection:
while busy, or after a failure (the connection is then dropped and made again on the next
read), `fetch` answers None and the caller reads the usual way.

SQLite needs none of this: its small reads already run on the event loop
(`Database.run_read`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from sqlalchemy.engine import Dialect

from farmhand.server import prepared
from farmhand.server.queue.waking.relay import connect_params

log = logging.getLogger("farmhand.server.queue.waking.reader")

#: Seconds a read may take before the caller reads the usual way (and the connection goes).
READ_TIMEOUT = 2.0


class LoopReader:
    """One autocommit PostgreSQL connection for small reads on the event loop."""

    def __init__(self, url: str, dialect: Dialect) -> None:
        self._url = url
        self._dialect = dialect
        self._conn: psycopg.AsyncConnection | None = None
        self._busy = False
        self.reads = 0  #: reads answered here (for tests and metrics)
        self.failures = 0  #: reads that failed here (the caller read the usual way)

    async def fetch(self, statement: Any, params: dict[str, Any]) -> list[Any] | None:
        """`statement`'s rows (as `prepared.fetch` gives them) for `params`, or None when
        this connection is busy with another read or failed: read the usual way then."""
        if self._busy:
            return None
        self._busy = True
        try:
            return await asyncio.wait_for(self._fetch(statement, params), READ_TIMEOUT)
        except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
            self.failures += 1
            log.debug("a read on the event loop's connection failed: %s", exc)
            await self.close()
            return None
        except asyncio.CancelledError:  # the request went: its read may be mid-flight
            conn, self._conn = self._conn, None
            if conn is not None:
                asyncio.get_running_loop().create_task(conn.close())
            raise
        finally:
            self._busy = False

    async def _fetch(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                autocommit=True, prepare_threshold=None, **connect_params(self._url, "reader")
            )
        this = prepared.compiled_for(statement, self._dialect)
        cursor = await self._conn.execute(this.sql, this.args(params))
        rows = this.shape(await cursor.fetchall())
        self.reads += 1
        return rows

    async def close(self) -> None:
        """Close the connection (the next read makes a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
