"""Wakeups across server replicas on one PostgreSQL: latency and NOTIFY coalescing.

Three `farmhand server` processes on one database: A (LISTEN/NOTIFY on, a 30 s claim re-check
so only a wakeup answers quickly), P (LISTEN/NOTIFY off, the default 1 s re-check) and B.
Each round, a claim long-polls on A (or P) and one record is submitted through B (or through
A itself); the figure is the time from the submit call to the claim's answer. Then 1,000
one-record submissions through B from 8 threads, counting the NOTIFYs a listener sees.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from farmhand import wire
from farmhand.cli.demo import free_port, wait_until_up
from farmhand.client import FarmhandClient
from farmhand.server.queue.waking.relay import CHANNEL, connect_params
from tests.support.databases import PostgresDatabase, postgres_problem

TOKEN = "fh_bench_admin_token"
# Seconds a claim waits before the submit: long enough to be waiting (a benchmark may guess),
# and spread so polling's phase does not decide its figure.
SETTLE = (0.2, 1.2)


def serve(url: str, data_dir: Path, **settings: object) -> tuple[subprocess.Popen, str]:
    """A server process on `url` with FARMHAND_* `settings`; (process, base URL)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    env.update(FARMHAND_ADMIN_TOKEN=TOKEN, FARMHAND_DATABASE_URL=url)
    env.update({f"FARMHAND_{k.upper()}": str(v) for k, v in settings.items()})
    argv = [sys.executable, "-m", "farmhand", "server", "--port", str(port)]
    argv += ["--data-dir", str(data_dir / str(port)), "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    with FarmhandClient(base, TOKEN) as client:
        wait_until_up(client, proc)
    return proc, base


def wake_latencies(claim_at: str, submit_to: str, rounds: int) -> list[float]:
    """Seconds from a submit call (through `submit_to`) to a waiting claim's answer. Each
    round's claim asks for its row's campaign only and its record is completed at once: a
    record left leased would come back when its lease ran out, and a later round's claim
    would take it before its own submit (a negative latency)."""
    with FarmhandClient(claim_at, TOKEN) as a, FarmhandClient(submit_to, TOKEN) as b:
        campaign = a.create_campaign("wake").id
        me = a.register(wire.AgentRegister(name="bench", host="h", slots=1)).agent.id

        def claim(answered: list[tuple[float, wire.Lease]]) -> None:
            with FarmhandClient(claim_at, TOKEN) as client:
                got = client.claim(me, 1, wait=30, campaign_id=campaign)
                answered.extend((time.perf_counter(), lease) for lease in got)

        out = []
        for n in range(rounds):
            answered: list[tuple[float, wire.Lease]] = []
            thread = threading.Thread(target=claim, args=(answered,))
            thread.start()
            time.sleep(random.uniform(*SETTLE))
            began = time.perf_counter()
            b.submit(campaign, [wire.RecordSpec(key=f"k{n}", command="true")])
            thread.join()
            if not answered:
                raise RuntimeError(f"round {n}: the claim got nothing within its 30 s wait")
            at, lease = answered[0]
            if lease.key != f"k{n}":
                raise RuntimeError(f"round {n}: the claim got {lease.key!r}, not k{n}")
            a.complete(lease.run_id, wire.RunComplete(token=lease.token))
            out.append(at - began)
        return out


def notifies_for_burst(url: str, submit_to: str, submissions: int) -> tuple[int, float]:
    """NOTIFYs seen while `submissions` one-record requests go through one replica."""
    seen = 0
    with psycopg.connect(**connect_params(url, "bench"), autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        with FarmhandClient(submit_to, TOKEN) as client:
            campaign = client.create_campaign("burst").id

            def submit(n: int) -> None:
                client.submit(campaign, [wire.RecordSpec(key=f"b{n}", command="true")])

            began = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(submit, range(submissions)))
            took = time.perf_counter() - began
        for _ in conn.notifies(timeout=1.0):  # the trailing send, and any stragglers
            seen += 1
    return seen, took


def describe(samples: list[float]) -> str:
    """p50 / p95 / max in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms"


def main() -> int:
    """Start the replicas, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--submissions", type=int, default=1000)
    args = parser.parse_args()
    if postgres_problem():
        print(f"skipping: {postgres_problem()}")
        return 0
    database = PostgresDatabase()
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bases = []
            for settings in ({"claim_poll_interval": 30}, {"listen_notify": False}, {}):
                proc, base = serve(database.url, Path(tmp), **settings)
                procs.append(proc)
                bases.append(base)
            a, p, b = bases
            rows = [
                ("same replica (A→A), in-process wakeup", a, a),
                ("cross replica (B→A), LISTEN/NOTIFY", a, b),
                ("cross replica (B→P), polling every 1 s", p, b),
            ]
            print(f"claim wake latency, submit call → claim answer, {args.rounds} rounds:")
            for label, claim_at, submit_to in rows:
                print(f"  {label:<42}{describe(wake_latencies(claim_at, submit_to, args.rounds))}")
            seen, took = notifies_for_burst(database.url, b, args.submissions)
            print(
                f"\n{args.submissions} one-record submissions through B (8 threads) in "
                f"{took:.2f} s: {seen} NOTIFYs ({args.submissions / took:,.0f} submissions/s)"
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
