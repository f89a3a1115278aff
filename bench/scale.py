"""`make bench`: flat at scale — claims, the overview page and GET /status with 1,000,000 records.

For each backend, three databases, each built by the migrations (`farmhand.server.migrate`,
not create_all), filled by SQL in a few INSERT … SELECT statements, and served by a real
`farmhand server` process:

- "10k": 10,000 ready records (`--small`) in campaign "queue", and nothing else;
- "1M, 10k ready": the same 10,000 ready records in "queue", and 990,000 done records in
  campaign "ended", each with one done run and a result document (1,000,000 in all,
  `--records`);
- "1M ready": 1,000,000 ready records in "queue".

Every record runs `true` at priority 0 on the subprocess runner, asking for no resources,
with no parents, inputs or params. PostgreSQL databases are VACUUM ANALYZEd after the fill,
as autovacuum would have done by the time a million records had been submitted.

On each database, over HTTP, with the queue back at its size before each measurement:

- claim latency: one client claims one record and completes it, one after another
  (`--claims`, at most a fifth of the queue, after 20 unmeasured): the time of the claim
  request, p50 and p99; once as a plain claim, once as an agent sends it (runners, free
  resources, walltime left);
- claim + complete rate: bench/claims.py's 8 client processes, one record at a time and in
  batches of 32, `--seconds` each, while a refilling process re-queues the records they
  finish every 0.1 s (one UPDATE, as a forced retry would), so the queue stays at its size;
  beside each, its ratio to the rate on "10k";
- the overview page and GET /api/v1/status (median and p95 of 20).

Targets with 1,000,000 records: claim p99 <= 20 ms; the rate within 20 % of the rate at 10k
(ratio >= 80 %); overview page <= 300 ms. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.claims import CLIENTS, TOKEN, claim_loop, fan_out
from bench.overview import timed
from bench.scratch import BACKENDS, Sql, backends, database, migrated, server
from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.server.db import Database
from farmhand.server.pages.access import COOKIE

BATCHES = (1, 32)
WARMUP = 20
REFILL_EVERY = 0.1
#: What a real agent's claim carries besides its size (agent/runtime/claims.py).
AS_AN_AGENT: dict[str, Any] = {
    "runners": ["subprocess"],
    "free": wire.Resources(cores=32, gpus=2, memory_mb=131072),
    "walltime_left": 86400.0,
}


@dataclass(frozen=True)
class Scenario:
    """One database: `ready` records in campaign "queue", `ended` done ones in "ended"."""

    name: str
    ready: int
    ended: int


def count(n: int) -> str:
    """10000 -> '10k', 1000000 -> '1M'."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{suffix}"
    return f"{n:,}"


def scenarios(records: int, small: int) -> list[Scenario]:
    """The baseline queue, a big table with the same queue, and a big queue."""
    return [
        Scenario(count(small), small, 0),
        Scenario(f"{count(records)}, {count(small)} ready", small, records - small),
        Scenario(f"{count(records)} ready", records, 0),
    ]


def fill(db: Database, scenario: Scenario) -> tuple[int, float]:
    """Insert the scenario's campaigns, records, runs and results by SQL; (the queue's
    campaign id, seconds)."""
    sql = Sql(db.is_sqlite)
    began = time.perf_counter()
    ids = {}
    with db.engine.begin() as conn:
        for name in ("ended", "queue"):
            conn.execute(
                text(
                    "INSERT INTO campaign (name, version, defaults, created_at, started_at) "
                    f"VALUES (:name, 1, '{{}}', {sql.now}, {sql.ago('86400')})"
                ),
                {"name": name},
            )
            ids[name] = conn.execute(
                text("SELECT id FROM campaign WHERE name = :name"), {"name": name}
            ).scalar_one()
        # The ended records first: older work has the lower ids.
        for name, n, state, attempts in (
            ("ended", scenario.ended, "done", 1),
            ("queue", scenario.ready, "ready", 0),
        ):
            conn.execute(
                text(
                    "INSERT INTO record (campaign_id, key, command, priority, run_args, state, "
                    "attempts, max_attempts, created_at, updated_at) "
                    f"SELECT {ids[name]}, 'key-' || i, 'true', 0, '{{}}', '{state}', "
                    f"{attempts}, 3, {sql.now}, {sql.now} FROM ({sql.series}) AS g"
                ),
                {"n": n},
            )
        conn.execute(
            text(
                "INSERT INTO run (record_id, token, attempt, state, claimed_at, started_at, "
                "ended_at, exit_code, stdout_tail) "
                f"SELECT id, 't' || id, 1, 'done', {sql.ago('id % 86400 + 20')}, "
                f"{sql.ago('id % 86400 + 10')}, {sql.ago('id % 86400')}, 0, 'converged\n' "
                f"FROM record WHERE campaign_id = {ids['ended']}"
            )
        )
        conn.execute(
            text(
                "INSERT INTO record_result (record_id, run_id, document) "
                "SELECT record_id, id, "
                + sql.json_of("""'{"energy": -' || record_id || '.5, "steps": 40}'""")
                + " FROM run"
            )
        )
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return ids["queue"], time.perf_counter() - began


def requeue(db: Database, campaign_id: int, limit: int) -> int:
    """Make up to `limit` done records of the campaign ready again, as a forced retry does
    (its result stays until the next completion replaces it); returns how many."""
    sql = Sql(db.is_sqlite)
    with db.write() as session:
        return session.execute(
            text(
                "UPDATE record SET state = 'ready', attempts = 0, agent_id = NULL, "
                f"lease_expires_at = NULL, end_seq = NULL, updated_at = {sql.now} "
                "WHERE id IN (SELECT id FROM record "
                "WHERE campaign_id = :campaign AND state = 'done' LIMIT :limit)"
            ),
            {"campaign": campaign_id, "limit": limit},
        ).rowcount


def _refill_loop(url: str, campaign_id: int, stop: Any) -> None:
    db = Database(url)
    try:
        while not stop.wait(REFILL_EVERY):
            requeue(db, campaign_id, 100_000)
    finally:
        db.dispose()


@contextmanager
def refilling(url: str, campaign_id: int) -> Iterator[None]:
    """A process that re-queues the campaign's done records every REFILL_EVERY seconds
    while the block runs (a process, so the client processes fork from a single thread)."""
    context = mp.get_context("fork")
    stop = context.Event()
    process = context.Process(target=_refill_loop, args=(url, campaign_id, stop), daemon=True)
    process.start()
    try:
        yield
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join()


def latencies(base: str, claims: int, **narrow: Any) -> tuple[float, float]:
    """Claim one record and complete it, `claims` times in a row; the claims' (p50, p99) in
    milliseconds."""
    took = []
    with FarmhandClient(base, TOKEN) as client:
        me = client.register(wire.AgentRegister(name="latency", host="h", slots=1)).agent.id
        for k in range(WARMUP + claims):
            began = time.perf_counter()
            got = client.claim(me, 1, **narrow)
            if k >= WARMUP:
                took.append((time.perf_counter() - began) * 1000)
            if not got:
                raise RuntimeError("the queue ran dry")
            client.complete(got[0].run_id, wire.RunComplete(token=got[0].token))
    cuts = statistics.quantiles(took, n=100)
    return cuts[49], cuts[98]


def pages(base: str, repeat: int) -> dict[str, tuple[float, float]]:
    """The overview page (logged in by cookie) and GET /api/v1/status: (median, p95) ms."""
    api = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, cookies={COOKIE: TOKEN}, timeout=60) as http:

        def get(path: str, **headers: str) -> Any:
            return lambda: http.get(path, headers=headers).raise_for_status()

        return {
            "overview": timed(get("/"), repeat),
            "status": timed(get("/api/v1/status", **api), repeat),
        }


def measure(url: str, scenario: Scenario, data_dir: Path, args: argparse.Namespace) -> dict:
    """Fill one database and take every figure of its row."""
    db = migrated(url)
    try:
        queue, took = fill(db, scenario)
        print(f"  {scenario.name}: filled in {took:.1f} s", flush=True)
        row: dict[str, Any] = {"fill": took}
        claims = min(args.claims, scenario.ready // 5)
        with server(url, data_dir, TOKEN) as (base, pid):
            for label, narrow in (("plain", {}), ("agent", AS_AN_AGENT)):
                requeue(db, queue, scenario.ready)
                row[label] = latencies(base, claims, **narrow)
            for batch in BATCHES:
                requeue(db, queue, scenario.ready)
                db.dispose()  # no pooled connection crosses the forks
                with refilling(url, queue):
                    row[batch], _, _ = fan_out(claim_loop, (base, batch), args.seconds, pid)
            row |= pages(base, args.repeat)
        return row
    finally:
        db.dispose()


def report(backend: str, rows: dict[Scenario, dict]) -> None:
    """Print one backend's table."""
    header = (
        f"{'database':<20}{'ready':>11}{'fill s':>8}"
        f"{'claim p50':>11}{'p99':>7}{'agent p50':>11}{'p99':>7}"
        f"{'rec/s x1':>10}{'vs base':>8}{'rec/s x32':>11}{'vs base':>8}"
        f"{'overview':>10}{'p95':>7}{'status':>8}{'p95':>7}"
    )
    print(f"\n{backend} (ms unless said; 'vs base' = rate / rate on the first row)")
    print(header)
    print("-" * len(header))
    base = next(iter(rows.values()))
    for scenario, row in rows.items():
        print(
            f"{scenario.name:<20}{scenario.ready:>11,}{row['fill']:>8.1f}"
            f"{row['plain'][0]:>11.1f}{row['plain'][1]:>7.1f}"
            f"{row['agent'][0]:>11.1f}{row['agent'][1]:>7.1f}"
            + "".join(f"{row[b]:>10,.0f}{row[b] / base[b]:>8.0%}" for b in BATCHES)
            + f"{row['overview'][0]:>10.0f}{row['overview'][1]:>7.0f}"
            f"{row['status'][0]:>8.0f}{row['status'][1]:>7.0f}",
            flush=True,
        )


def _terminated(signum: int, _frame: Any) -> None:
    sys.exit(128 + signum)  # unwinds the with-blocks: servers stopped, databases dropped


def _default_sigterm() -> None:
    # Forked clients and refillers end at once when their pool or the refill ends them.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main() -> int:
    """Measure each backend's three databases and print a table per backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="in the big databases")
    parser.add_argument("--small", type=int, default=10_000, help="ready records of the base")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate measurement")
    parser.add_argument("--claims", type=int, default=2_000, help="timed claims per latency")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per page")
    args = parser.parse_args()
    if not 0 < args.small < args.records:
        parser.error("--small must be above 0 and below --records")
    signal.signal(signal.SIGTERM, _terminated)
    os.register_at_fork(after_in_child=_default_sigterm)
    print(
        f"flat at scale: {args.records:,} records vs a queue of {args.small:,}; "
        f"{CLIENTS} client processes for the rates.\ntargets at {count(args.records)}: "
        "claim p99 <= 20 ms; rates >= 80 % of the base's; overview <= 300 ms"
    )
    for backend in backends(None if args.backend == "both" else [args.backend]):
        print(f"\n{backend}:", flush=True)
        rows = {}
        for number, scenario in enumerate(scenarios(args.records, args.small)):
            with (
                tempfile.TemporaryDirectory(prefix="farmhand-scale-") as tmp,
                database(backend, Path(tmp), f"scale{number}") as url,
            ):
                rows[scenario] = measure(url, scenario, Path(tmp) / "data", args)
        report(backend, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
