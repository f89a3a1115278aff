"""The hot path's SQL, the claim and the run reports: as each dialect receives it (checked in
under sql/, so review sees every change), and the claim's plan with a long queue.

After changing a claim statement,
`FARMHAND_UPDATE_SQL=1 pytest tests/server/queue/test_claim_sql.py` rewrites the files; read
their diff.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from farmhand import wire
from farmhand.server import prepared
from farmhand.server.catalog import campaigns
from farmhand.server.catalog.submission import submit
from farmhand.server.db import Database
from farmhand.server.queue import agents, claim, lifecycle, reports

SQL = Path(__file__).parent / "sql"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: How an agent on a batch node asks (runners, free resources, time left), alone or for one
#: campaign's dataset (or several campaigns'); `none` is a script's or the benchmark's claim.
AGENT = {"runners", "cores", "gpus", "memory_mb", "walltime"}
FILTERS = {
    "none": set(),
    "agent": AGENT,
    "campaign": {"campaign", "datasets", *AGENT},
    "campaigns": {"campaigns", "datasets", *AGENT},
}
DIALECTS = {
    "sqlite": sqlite.dialect(paramstyle="named"),
    "postgresql": postgresql.psycopg.dialect(paramstyle="named"),
}


def render(dialect: str) -> dict[str, str]:
    """`{file name: SQL}`: a claim's statements, then the claim with each filter set."""
    then = claim.run_statements(dialect)
    steps = [claim.gate_statement(dialect), claim.claim_statement(dialect, frozenset())]
    steps.append(then["insert_runs"])
    if then["set_run_ids"] is not None:  # SQLite: each record points at its new run
        steps.append(then["set_run_ids"])
    steps.append(then["start_campaigns"])  # only when a campaign's first record is claimed
    files = {"claim.sql": steps}
    for name, filters in FILTERS.items():
        if filters:
            files[f"claim_{name}.sql"] = [claim.claim_statement(dialect, frozenset(filters))]
    postgres = dialect == "postgresql"
    files["report.sql"] = [  # what a batch of run reports executes, in order
        reports.LOCK_RECORDS,
        reports.LOCK_RUNS,
        reports.END_RECORDS,
        reports.END_RUNS_POSTGRESQL if postgres else reports.END_RUNS,
        reports.STORE_RESULTS_POSTGRESQL if postgres else reports.STORE_RESULTS,
        # The campaigns whose records ended, locked (PostgreSQL), then each one looked at.
        *([lifecycle.LOCK_CAMPAIGNS] if postgres else []),
        lifecycle.ANY_UNFINISHED,
    ]
    files["start.sql"] = [reports.START_RECORD, reports.START_RUN]
    return {name: "".join(_sql(s, dialect) for s in parts) for name, parts in files.items()}


def _sql(statement: Any, dialect: str) -> str:
    compiled = str(statement.compile(dialect=DIALECTS[dialect]))
    return "\n".join(line.rstrip() for line in compiled.splitlines()) + ";\n\n"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_claim_sql_is_checked_in(dialect: str) -> None:
    rendered = render(dialect)
    folder = SQL / dialect
    if os.environ.get("FARMHAND_UPDATE_SQL") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for stale in set(os.listdir(folder)) - set(rendered):
            (folder / stale).unlink()
        for name, sql in rendered.items():
            (folder / name).write_text(sql)
    on_disk = {p.name: p.read_text() for p in sorted(folder.glob("*.sql"))}
    assert on_disk == rendered, (
        f"the hot path's SQL changed: rerun with FARMHAND_UPDATE_SQL=1 and review {folder}'s diff"
    )


def test_subqueries_in_returning_name_the_claimed_row() -> None:
    """SQLite gets RETURNING without table names, subqueries included: a bare `id` in one
    means the subquery's own table (issue 13), so the claimed row's must be `record.id`."""
    for filters in FILTERS.values():
        sql = _sql(claim.claim_statement("sqlite", frozenset(filters)), "sqlite")
        returning = sql.split(" RETURNING ", 1)[1]
        compared = re.findall(r"WHERE (\S+) = (\S+)\)", returning)
        assert len(compared) == 5 and all(right.startswith("record.") for _, right in compared)


def fill(db: Database, ready: int) -> tuple[int, list[int]]:
    """Two campaigns sharing `ready` ready records (and a fifth as many done ones) and an
    agent: the agent's id and the campaigns' ids."""
    with db.write() as s:
        made = [campaigns.create(s, spec=wire.CampaignCreate(name=f"c{i}")).id for i in (0, 1)]
        share = ready * 5 // 8
        for cid in made:
            specs = [
                wire.RecordSpec(key=f"k{i}", command="true", run_args={"cores": 1}, dataset="d")
                for i in range(share)
            ]
            body = wire.RecordsCreate(campaign_id=cid, records=specs)
            submit.create(s, body=body, now=T0, default_max_attempts=3, max_command_length=100)
        s.execute(text("UPDATE record SET state = 'done' WHERE id % 5 = 0"))
        agent = agents.register(
            s, body=wire.AgentRegister(name="a", host="h", slots=4), token_id=1, now=T0
        )
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return agent.id, made


@pytest.fixture
def plans(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The plan of every claim UPDATE run on `db`, explained by the database just before it
    runs, with the SQL and parameters it receives (on the driver's cursor: `prepared`)."""
    found: list[Any] = []
    dialect = db.engine.dialect
    claims = {
        prepared.compiled_for(claim.claim_statement(db.dialect, frozenset(f)), dialect).sql
        for f in FILTERS.values()
    }
    explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN (FORMAT JSON) "
    cursor_of = prepared._cursor

    class Explaining:
        def __init__(self, cursor: Any) -> None:
            self.cursor = cursor

        def execute(self, sql: str, args: Any) -> Any:
            if sql in claims:
                self.cursor.execute(explain + sql, args)
                found.append(self.cursor.fetchall())
            return self.cursor.execute(sql, args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.cursor, name)

    monkeypatch.setattr(prepared, "_cursor", lambda conn: Explaining(cursor_of(conn)))
    return found


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_the_claim_reads_the_ready_queue_in_order_without_sorting_it(
    db: Database, plans: list[Any]
) -> None:
    """Issue 13: on a migrated SQLite database every claim sorted the whole ready queue."""
    agent, (first, _) = fill(db, ready=10_000)
    asks = {
        "none": {},
        "agent": {
            "runners": ["subprocess"],
            "free": wire.Resources(cores=4, gpus=0, memory_mb=8000),
            "walltime_left": 3600.0,
        },
    }
    asks["campaign"] = {**asks["agent"], "campaign_ids": [first], "datasets": ["d"]}
    assert set(asks) == set(FILTERS) - {"campaigns"}  # several campaigns: sorted, as ever
    for name, ask in asks.items():
        with db.write_core() as conn:
            got = claim.claim(conn, agent_id=agent, max_records=8, clock=lambda: T0, ttl=60, **ask)
        assert len(got) == 8, name
        (plan,) = plans[-1:]
        if db.dialect == "sqlite":
            steps = [row[3] for row in plan]
            reads = [s for s in steps if s.startswith(("SCAN record", "SEARCH record USING INDEX"))]
            assert len(reads) == 1 and " INDEX ix_record_ready" in reads[0], (name, steps)
            assert not [s for s in steps if "TEMP B-TREE" in s], (name, steps)
        else:
            nodes = list(_nodes(plan[0][0][0]["Plan"]))
            kinds = {(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes}
            assert ("Seq Scan", "record", None) not in kinds, (name, kinds)
            assert not [k for k in kinds if "Sort" in k[0]], (name, kinds)
            assert [k for k in kinds if (k[2] or "").startswith("ix_record_ready")], (name, kinds)
    assert len(plans) == len(asks)
