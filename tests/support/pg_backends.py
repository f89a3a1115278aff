"""Look at (and act on) a test PostgreSQL database's backends: find a server's relay
connections in `pg_stat_activity`, terminate them, hold table locks."""

from __future__ import annotations

import psycopg

from farmhand.server.queue.waking.relay import connect_params


def sql(url: str, query: str, *args: object) -> list[tuple]:
    """Run one statement on its own autocommit connection to `url`; its rows, if any."""
    with psycopg.connect(**connect_params(url, "test"), autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def relay_backend(url: str, role: str, pid: int, last_query: str = "") -> int | None:
    """The backend pid of process `pid`'s relay connection `role` ("listen" or "notify") on
    the database of `url`, whose last query starts with `last_query`; None if there is none."""
    rows = sql(
        url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
        "AND datname = current_database() AND query LIKE %s",
        f"farmhand-{role}-{pid}",
        last_query + "%",
    )
    return rows[0][0] if rows else None


def terminate(url: str, backend_pid: int) -> None:
    """Cut one backend's connection, as a crash or a network failure would."""
    sql(url, "SELECT pg_terminate_backend(%s)", backend_pid)
