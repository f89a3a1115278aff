"""`make bench`: the status pages with a million records (target: overview <= 300 ms).

For each backend: 1,000,000 records in ten campaigns (one of 910,000), with a run for every
record that was started and 50 agents, inserted straight into the database by SQL; then a
real `farmhand server` process on it, timed over HTTP with a logged-in session cookie. Also
timed directly: the counts-by-state GROUP BY the overview runs, the stuck-records GROUP BY
(`farmhand status`: the agents offer runners and resources some ready records lack), and,
for reference, the `run.ended_at` scan a database-side throughput would need (unindexed;
the pages use sampled counts instead), and the count a Cancel…/Retry… confirmation makes
(`walk.count`, by state, a whole campaign); the campaign page's plots (timeline and run times of
the 910,000-record campaign, whose finished records ended over the last hour) and the
overview's agents at a glance. The pages keep plots while a campaign's counts stay the
same, so over HTTP the campaign pages and the overview show them kept; the API's
`/timeline` and `/runtimes` compute them on every request. Numbers are printed, never
asserted.

Records carry one of 20 datasets and one of 10 tags (plus a tag on one record in 100,000),
so the campaign page's dataset and tag filters are timed as well; and params `T` (ten
values) and `a` (seven, plus a rare one on one record in 100,000), with a result document on
every done record, for the `where` filters, the results table (streamed whole, with the
server's peak memory before and after) and the "what ended since" poll of the Python API.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.scratch import BACKENDS, Sql, backends, database, migrated, server
from farmhand import wire
from farmhand.server.catalog import walk
from farmhand.server.db import Database
from farmhand.server.pages.access import COOKIE
from farmhand.server.tables import utcnow
from farmhand.server.views import browse, charts, glance, status, stuck

TOKEN = "fh_bench_overview"
CAMPAIGNS = 10
AGENTS = 50
# Out of every 200 records: 110 done, 70 ready, 6 failed, 2 running, 1 claimed,
# 1 cancelled, 10 waiting. One ready record in 1,000 needs runner 'lammps' (no agent has
# it), one in 997 needs 4 GPUs (agents have 2).
STATE = (
    "CASE WHEN i % 200 < 110 THEN 'done' WHEN i % 200 < 180 THEN 'ready' "
    "WHEN i % 200 < 186 THEN 'failed' WHEN i % 200 < 188 THEN 'running' "
    "WHEN i % 200 < 189 THEN 'claimed' WHEN i % 200 < 190 THEN 'cancelled' ELSE 'waiting' END"
)

PARAM_NAMES = '["T", "a"]'
PARAMS = (
    """('{"T": ' || ((i % 10) * 100) || ', "a": ' || """
    """(CASE WHEN i % 100000 = 7 THEN 9.5 ELSE 4.0 + (i % 7) * 0.05 END) || '}')"""
)
TAGS = """(CASE WHEN i % 100000 = 7 THEN '["rare"]' ELSE '["t' || (i % 10) || '"]' END)"""


def fill(db: Database, n: int) -> float:
    """Insert `n` records, their runs and the agents in a few statements; returns seconds."""
    sql = Sql(db.is_sqlite)
    small = n // 100
    big = n - (CAMPAIGNS - 1) * small
    began = time.perf_counter()
    with db.engine.begin() as conn:
        for k in range(CAMPAIGNS):
            conn.execute(
                text(
                    "INSERT INTO campaign (name, version, defaults, created_at, started_at, "
                    f"params) VALUES (:name, 1, '{{}}', {sql.now}, {sql.ago('3600')}, "
                    f"{sql.json_of(repr(PARAM_NAMES), 'JSONB')})"
                ),
                {"name": f"campaign-{k}"},
            )
        for k in range(AGENTS):
            state = "draining" if k % 10 == 9 else "active"
            # Every tenth is stale; the others stay live however long the measuring takes.
            beat = sql.ago("600") if k % 10 == 8 else sql.later(3600)
            conn.execute(
                text(
                    "INSERT INTO agent (name, host, slots, labels, state, registered_at, "
                    "last_heartbeat, runners, resources) VALUES (:name, :host, 32, '{}', "
                    f":state, {sql.now}, {beat}, :runners, :resources)"
                ),
                {
                    "name": f"agent-{k}",
                    "host": f"cn{k:03d}",
                    "state": state,
                    "runners": '["subprocess"]',
                    "resources": '{"cores": 32, "gpus": 2, "memory_mb": 131072}',
                },
            )
        leased = "i % 200 >= 186 AND i % 200 < 189"
        conn.execute(
            text(
                "INSERT INTO record (campaign_id, key, command, priority, run_args, state, "
                "attempts, max_attempts, agent_id, lease_expires_at, created_at, updated_at, "
                "dataset, tags, runner, gpus, params) "
                f"SELECT CASE WHEN i <= {big} THEN 1 ELSE 2 + (i - {big} - 1) / {small} END, "
                f"'key-' || i, 'python calc.py ' || i, 0, '{{}}', {STATE}, "
                f"CASE WHEN i % 200 < 110 OR {leased} THEN 1 ELSE 0 END, 3, "
                f"CASE WHEN {leased} THEN 1 + i % {AGENTS} END, "
                f"CASE WHEN {leased} THEN {sql.later(3600)} END, {sql.now}, "
                # A finished record's updated_at is its end: its run's ended_at (below).
                f"CASE WHEN i % 200 < 110 OR (i % 200 >= 180 AND i % 200 < 186) "
                f"THEN {sql.ago('i % 3600')} ELSE {sql.now} END, "
                "'ds-' || (i % 20), "
                f"{sql.json_of(TAGS)}, "
                "CASE WHEN i % 1000 = 117 THEN 'lammps' ELSE 'subprocess' END, "
                "CASE WHEN i % 997 = 150 THEN 4 END, "
                f"{sql.json_of(PARAMS, 'JSONB')} "
                f"FROM ({sql.series}) AS g"
            ),
            {"n": n},
        )
        conn.execute(
            text(
                "INSERT INTO run (record_id, agent_id, token, attempt, state, claimed_at, "
                "started_at, ended_at, exit_code, error, stdout_tail, stderr_tail) "
                f"SELECT id, 1 + id % {AGENTS}, 't' || id, 1, "
                "CASE state WHEN 'done' THEN 'done' WHEN 'failed' THEN 'failed' "
                "ELSE 'running' END, "
                f"{sql.ago('id % 3600 + 20')}, {sql.ago('id % 3600 + 10')}, "
                f"CASE WHEN state IN ('done', 'failed') THEN {sql.ago('id % 3600')} END, "
                "CASE state WHEN 'done' THEN 0 WHEN 'failed' THEN 3 END, "
                "CASE WHEN state = 'failed' THEN 'exit code 3' END, "
                "'step 1\nstep 2\nconverged after ' || (id % 97) || ' iterations\n', "
                "CASE WHEN state = 'failed' THEN 'Traceback (most recent call last):\n"
                '  File "calc.py", line 12, in <module>\n'
                "ValueError: negative volume in structure ' || id || '\n' END "
                "FROM record WHERE state IN ('done', 'failed', 'running')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO record_result (record_id, run_id, document) "
                "SELECT record.id, run.id, "
                + sql.json_of("""'{"energy": {"total": -' || record.id || '.5}, "steps": 40}'""")
                + " FROM record JOIN run ON run.record_id = record.id WHERE record.state = 'done'"
            )
        )
    return time.perf_counter() - began


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, p95) in milliseconds after two warm-up calls."""
    for _ in range(2):
        call()
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        took.append((time.perf_counter() - began) * 1000)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(len(took) * 0.95))]


def direct(db: Database, repeat: int) -> dict[str, tuple[float, float]]:
    """The overview's heaviest query, and the unindexed throughput scan, on the database."""

    def counts() -> object:
        with db.read() as session:
            return status.campaigns(session)

    def stuck_groups() -> object:
        with db.read() as session:
            return stuck.explain(session, now=utcnow(), stale_after=60)

    def ended_scan() -> object:
        with db.read() as session:
            cutoff = utcnow() - timedelta(minutes=5)
            query = text("SELECT count(*) FROM run WHERE ended_at > :cutoff")
            return session.execute(query, {"cutoff": cutoff.replace(tzinfo=None)}).scalar()

    def records(after: int | None = None, **chosen: Any) -> Callable[[], object]:
        def call() -> object:
            with db.read() as session:
                filters = browse.Filters(**chosen)
                return browse.record_page(session, campaign_id=1, filters=filters, after=after)

        return call

    def plots() -> object:
        with db.read() as session:
            (campaign,) = [c for c in status.campaigns(session) if c.id == 1]
            conn = session.connection()
            return charts.of_campaign(conn, campaign, now=utcnow()), charts.runtimes_of(
                conn, campaign
            )

    def timeline() -> object:
        with db.read() as session:
            return charts.timeline(
                session.connection(), campaign_id=1, started_at=None, running=True, now=utcnow()
            )

    def runtimes() -> object:
        with db.read() as session:
            return charts.runtimes(session.connection(), campaign_id=1, finished=0)

    def agents_at_a_glance() -> object:
        with db.read() as session:
            return glance.of_agents(session, list(range(1, AGENTS + 1)), now=utcnow())

    lists = {
        "first page": records(),
        "key prefix": records(key_prefix="key-12345"),
        "dataset": records(dataset="ds-7"),
        "dataset, deep": records(dataset="ds-7", after=500_000),
        "common tag": records(tag="t3"),
        "rare tag": records(tag="rare"),
        "rare tag, deep": records(tag="rare", after=500_000),
    }

    def action_count(**chosen: Any) -> Callable[[], object]:
        """What the campaign page's Cancel…/Retry… confirmation counts (`walk.count`)."""

        def call() -> object:
            with db.read() as session:
                return walk.count(session, wire.RecordFilter(campaign_id=1, **chosen))

        return call

    counted = {
        "state=failed": action_count(state=wire.RecordState.failed),
        "key prefix": action_count(key_prefix="key-1234"),
        "common tag": action_count(tag="t3"),
        "where T>=600": action_count(where=["T>=600"]),
    }
    return {
        "counts by state (GROUP BY, direct)": timed(counts, repeat),
        **{f"records: {name} (direct)": timed(call, repeat) for name, call in lists.items()},
        **{f"action count: {name} (direct)": timed(call, repeat) for name, call in counted.items()},
        "stuck records (GROUP BY, direct)": timed(stuck_groups, repeat),
        "plots: timeline (direct)": timed(timeline, repeat),
        "plots: run times (direct)": timed(runtimes, repeat),
        "plots: counts + both, uncached (direct)": timed(plots, repeat),
        "agents at a glance (direct)": timed(agents_at_a_glance, repeat),
        "runs ended in last 5 min (scan, direct)": timed(ended_scan, repeat),
    }


def over_http(url: str, data_dir: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """Each page over HTTP from a real server process, logged in by cookie."""
    with (
        server(url, data_dir, TOKEN) as (base, pid),
        httpx.Client(base_url=base, cookies={COOKIE: TOKEN}, timeout=60) as http,
    ):

        def get(path: str, **headers: str) -> Callable[[], object]:
            def call() -> object:
                r = http.get(path, headers=headers)
                r.raise_for_status()
                return r

            return call

        pages = {
            "overview page /": get("/"),
            "overview live refresh": get("/", **{"X-Farmhand-Live": "1"}),
            "campaign page, first": get("/campaigns/1"),
            "campaign page, state=failed": get("/campaigns/1?state=failed"),
            "campaign page, deep keyset page": get("/campaigns/1?after=500000"),
            "campaign page, key prefix": get("/campaigns/1?key=key-12345"),
            "campaign page, dataset": get("/campaigns/1?dataset=ds-7"),
            "campaign page, dataset, deep": get("/campaigns/1?dataset=ds-7&after=500000"),
            "campaign page, common tag": get("/campaigns/1?tag=t3"),
            "campaign page, rare tag": get("/campaigns/1?tag=rare"),
            "campaign page, rare tag, deep": get("/campaigns/1?tag=rare&after=500000"),
            "GET /api/v1/status": get("/api/v1/status", Authorization=f"Bearer {TOKEN}"),
            "GET /campaigns/1/timeline": get(
                "/api/v1/campaigns/1/timeline", Authorization=f"Bearer {TOKEN}"
            ),
            "GET /campaigns/1/runtimes": get(
                "/api/v1/campaigns/1/runtimes", Authorization=f"Bearer {TOKEN}"
            ),
            "record page": get("/records/100"),
            "/metrics": get("/metrics"),
        }
        api = {"Authorization": f"Bearer {TOKEN}"}
        listed = "/api/v1/records?campaign_id=1&limit=1000&where="
        pages |= {
            "records where T>=600 (1000)": get(listed + "T>=600", **api),
            "records where a=9.5 (rare)": get(listed + "a=9.5", **api),
            "records where a=9.5, deep": get(listed + "a=9.5&after=500000", **api),
        }
        rows = {name: timed(call, repeat) for name, call in pages.items()}
        rows |= whole_tables(http, pid)
        return rows


def peak_mib(pid: int) -> float:
    """A process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def whole_tables(http: httpx.Client, pid: int) -> dict[str, tuple[float, float]]:
    """Once each: the big campaign's results table streamed whole (CSV, JSON lines), and the
    Python API's "what ended since" poll — its first (stamping every ended record) and then
    a poll with nothing new. Prints rows, bytes and the server's peak memory."""
    api = {"Authorization": f"Bearer {TOKEN}"}
    rows: dict[str, tuple[float, float]] = {}
    for form in ("csv", "jsonl"):
        before = peak_mib(pid)
        began = time.perf_counter()
        size = lines = 0
        with http.stream(
            "GET", f"/api/v1/campaigns/1/results?format={form}", headers=api, timeout=None
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
        took = (time.perf_counter() - began) * 1000
        print(
            f"  results ({form}): {lines:,} lines, {size / 2**20:.0f} MiB in {took / 1000:.1f} s; "
            f"server peak memory {before:.0f} -> {peak_mib(pid):.0f} MiB"
        )
        rows[f"results table ({form}), whole"] = (took, took)
    began = time.perf_counter()
    first = http.get("/api/v1/campaigns/1/ended?limit=1000", headers=api, timeout=None).json()
    rows["ended: first poll (stamps all)"] = ((time.perf_counter() - began) * 1000,) * 2
    cursor = first["cursor"]
    while first["more"]:  # read to the end, as as_completed would
        first = http.get(f"/api/v1/campaigns/1/ended?limit=1000&cursor={cursor}", headers=api)
        first = first.json()
        cursor = first["cursor"]

    def poll() -> object:
        return http.get(f"/api/v1/campaigns/1/ended?cursor={cursor}", headers=api).json()

    rows["ended: poll, nothing new"] = timed(poll, 20)
    return rows


def measure(backend: str, url: str, n: int, repeat: int, data_dir: Path) -> None:
    """Fill one database and print its rows."""
    db = migrated(url)
    took = fill(db, n)
    print(f"\n{backend}: {n:,} records inserted in {took:.1f} s")
    rows = {**direct(db, repeat), **over_http(url, data_dir, repeat)}
    if backend == "postgresql":
        # Index-only scans need the visibility map that (auto)vacuum writes.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        after = {**direct(db, repeat), **over_http(url, data_dir, repeat)}
        rows = {k: (*v, *after[k]) for k, v in rows.items()}
    db.dispose()
    columns = ["median ms", "p95 ms"]
    if backend == "postgresql":
        columns += ["VACUUMed median", "VACUUMed p95"]
    print(f"{'':<40}" + "".join(f"{c:>16}" for c in columns))
    for name, figures in rows.items():
        print(f"{name:<40}" + "".join(f"{x:>16.1f}" for x in figures))


def main() -> int:
    """Run the measurements on each backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per row")
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    args = parser.parse_args()
    print(f"status pages with {args.records:,} records: target <= 300 ms for the overview")
    for backend in backends(args.backend):
        with (
            tempfile.TemporaryDirectory() as tmp,
            database(backend, Path(tmp), "overview") as url,
        ):
            measure(backend, url, args.records, args.repeat, Path(tmp) / "data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
