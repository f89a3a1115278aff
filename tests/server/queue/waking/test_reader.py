"""`LoopReader` on a real PostgreSQL: the quiet queue's agent check read on the event loop,
the same rows as through the pool, never waiting for a busy or broken connection."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from farmhand import wire
from farmhand.server import migrate, prepared
from farmhand.server.db import Database
from farmhand.server.queue import agents, claim
from farmhand.server.queue.waking.reader import LoopReader
from farmhand.server.tables import utcnow
from tests.support.databases import PostgresDatabase, require_postgres
from tests.support.pg_backends import sql, terminate


@pytest.fixture
def pg_db() -> Iterator[Database]:
    """A fresh PostgreSQL database at head (this module is PostgreSQL-only)."""
    require_postgres()
    made = PostgresDatabase()
    db = Database(made.url)
    migrate.upgrade(db.engine)
    yield db
    db.dispose()
    made.drop()


def _agents(db: Database) -> tuple[int, int]:
    with db.write() as session:
        ids = [
            agents.register(
                session,
                body=wire.AgentRegister(name=name, host="h", slots=1),
                token_id=0,
                now=utcnow(),
            ).id
            for name in ("live", "gone")
        ]
    with db.write() as session:
        agents.stop(session, agent_id=ids[1], now=utcnow())
    return ids[0], ids[1]


def test_it_reads_what_the_pool_reads(pg_db: Database) -> None:
    live, gone = _agents(pg_db)
    statement = claim.gate_statement("postgresql")

    async def both(agent_id: int) -> tuple[list, list | None]:
        reader = LoopReader(pg_db.url, pg_db.engine.dialect)
        try:
            params = claim.gate_params(agent_id, utcnow())
            with pg_db.engine.connect() as conn:
                pooled = prepared.fetch(conn, statement, params)
            return pooled, await reader.fetch(statement, params)
        finally:
            await reader.close()

    for agent_id in (live, gone, gone + 1000):
        pooled, looped = asyncio.run(both(agent_id))
        assert looped == pooled
    pooled, _ = asyncio.run(both(gone))
    assert [row.state for row in pooled] == ["stopped"]


def test_a_busy_or_broken_connection_sends_the_caller_to_the_pool(pg_db: Database) -> None:
    live, _ = _agents(pg_db)
    statement, params = claim.gate_statement("postgresql"), claim.gate_params(live, utcnow())

    async def run() -> None:
        reader = LoopReader(pg_db.url, pg_db.engine.dialect)
        try:
            first = asyncio.create_task(reader.fetch(statement, params))
            await asyncio.sleep(0)  # the first read is under way
            assert await reader.fetch(statement, params) is None  # busy: read elsewhere
            assert [row.name for row in await first] == ["live"]
            (backend,) = sql(
                pg_db.url,
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                f"farmhand-reader-{os.getpid()}",
            )[0]
            await asyncio.to_thread(terminate, pg_db.url, backend)
            assert await reader.fetch(statement, params) is None  # broken: read elsewhere
            assert reader.failures == 1
            assert [row.name for row in await reader.fetch(statement, params) or []] == ["live"]
            assert reader.reads == 2
        finally:
            await reader.close()

    asyncio.run(run())
