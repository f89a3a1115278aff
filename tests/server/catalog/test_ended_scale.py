""" "What ended since" at 100,000 records: a poll returns only the records that ended, and
no statement it sends reads more than a few rows of the record table (SQLite: its plan uses
an index; PostgreSQL: the rows each scan read when run), never the whole campaign."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, text

from tests.server.helpers import API, agent, campaign, claim

N = 100_000


@contextmanager
def statements(api: TestClient) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the app's engines send meanwhile, with its parameters."""
    db = api.app.state.db
    seen: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        seen.append((sql, params))

    engines = {id(e): e for e in (db.engine, db._writer)}.values()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", keep)


def wide_reads_of_record(api: TestClient, sql: str, params: Any) -> list[str]:
    """How the statement reads the record table, where it reads more than a few rows: on
    SQLite a plan line scanning it without an index, or more than 200,000 VM steps when run
    (rolled back); on PostgreSQL each scan node of it that read (returned or filtered out)
    more than 50 rows when run (EXPLAIN ANALYZE, rolled back)."""
    db = api.app.state.db
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()
        if db.engine.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            lines = [row[-1] for row in cursor.fetchall()]
            wide = [line for line in lines if line.startswith("SCAN record")]
            # SQLite counts no rows read; its virtual machine's steps tell as well: a seek
            # and a few rows take thousands, reading 100,000 index entries millions.
            steps = [0]

            def count() -> int:
                steps[0] += 1000
                return 0

            raw.set_progress_handler(count, 1000)
            try:
                cursor.execute(sql, params)
                cursor.fetchall()
            finally:
                raw.set_progress_handler(None, 0)
                raw.rollback()
            if steps[0] > 200_000:
                wide.append(f"{steps[0]:,} VM steps: {lines}")
            return wide
        try:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        finally:
            raw.rollback()
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == "record":
            read = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
            read += node.get("Rows Removed by Filter", 0)
            read += node.get("Rows Removed by Index Recheck", 0)
            if read > 50:
                found.append(f"{node['Node Type']} read {read} rows")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_a_poll_at_100k_records_reads_only_what_ended(api: TestClient) -> None:
    """Caught regressions: the stamp look read every ended record through (campaign_id,
    state) on SQLite, and `(end_seq, id) > cursor` read the cursor's whole generation."""
    campaign(api, "other")  # ids differ between tables
    c = campaign(api, "big")
    for start in range(0, N, 10_000):
        records = [{"key": f"r{i}", "command": "x"} for i in range(start, start + 10_000)]
        r = api.post(f"{API}/records", json={"campaign_id": c, "records": records})
        assert r.status_code == 201 and r.json()["created"] == 10_000
    db = api.app.state.db
    with db.engine.begin() as conn:
        # Half the campaign ended long ago (one generation once stamped, which the next poll
        # must not read again).
        conn.execute(text("UPDATE record SET state = 'done' WHERE id % 2 = 0"))
    page = {"more": True, "cursor": None}
    while page["more"]:  # read what ended so far, as as_completed would
        query = {"limit": 1000, **({"cursor": page["cursor"]} if page["cursor"] else {})}
        page = api.get(f"{API}/campaigns/{c}/ended", params=query).json()
    cursor = page["cursor"]
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))  # the statistics a long-running database would have
    done = []
    for lease in claim(api, agent(api), 5):
        token = {"token": lease["token"], "result": {"v": 1}}
        assert api.post(f"{API}/runs/{lease['run_id']}/complete", json=token).status_code == 200
        done.append(lease["key"])
    with statements(api) as sent:
        page = api.get(f"{API}/campaigns/{c}/ended", params={"cursor": cursor}).json()
    assert [item["key"] for item in page["items"]] == done
    assert page["finished"] is False and page["more"] is False
    touching = [(sql, p) for sql, p in sent if "record" in sql]
    assert len(touching) >= 3  # the look for unstamped records, the stamp, the read
    for sql, params in touching:
        assert wide_reads_of_record(api, sql, params) == [], sql
    # Nothing new: the next poll stamps nothing and returns nothing.
    with statements(api) as sent:
        again = api.get(f"{API}/campaigns/{c}/ended", params={"cursor": page["cursor"]}).json()
    assert again["items"] == [] and not any(sql.lstrip().startswith("UPDATE") for sql, _ in sent)
