"""`make bench`: claim+complete throughput over HTTP next to its ceilings, and bulk submit.

For each backend: a real `farmhand server` process; 8 client processes claim a batch (1 or 32
records) and report it (`/runs/{id}/complete` for one, `/runs/reports` for a batch) for a few
seconds. Beside it: the same claim and report functions run directly on the database without
HTTP in one process (the better of 1 and 8 threads; `thr` says which), and a trivial
FastAPI route under the same uvicorn and client load. CPU time per record, of the server and
of the 8 clients, shows where the machine's cores go: server, clients and database share
them. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.scratch import BACKENDS, backends, database, migrated, server, stop
from farmhand import wire
from farmhand.cli.demo import free_port
from farmhand.client import FarmhandClient
from farmhand.server.catalog import campaigns
from farmhand.server.catalog.submission import submit
from farmhand.server.db import Database
from farmhand.server.queue import agents, claim, runs
from farmhand.server.tables import utcnow

TOKEN = "fh_bench_admin_token"
CLIENTS = 8
#: Records queued per second of measurement: more than the fastest run can take.
QUEUE_PER_SECOND = 30_000


def claim_loop(url: str, batch: int, seconds: float, start_at: float) -> int:
    """One client: from `start_at` for `seconds`, claim `batch` records and report them;
    returns how many it finished."""
    with FarmhandClient(url, TOKEN) as client:
        me = client.register(wire.AgentRegister(name="bench", host="h", slots=batch)).agent.id
        while time.time() < start_at:
            time.sleep(0.001)
        done, stop = 0, start_at + seconds
        while time.time() < stop:
            got = client.claim(me, batch)
            if not got:
                raise RuntimeError("the queue ran dry: raise QUEUE_PER_SECOND")
            if batch == 1:
                client.complete(got[0].run_id, wire.RunComplete(token=got[0].token))
            else:
                client.report_many([wire.RunReport(run_id=x.run_id, token=x.token) for x in got])
            done += len(got)
        return done


def _ping_loop(url: str, seconds: float, start_at: float) -> int:
    with httpx.Client() as client:
        while time.time() < start_at:
            time.sleep(0.001)
        n, stop = 0, start_at + seconds
        while time.time() < stop:
            client.post(url + "/ping")
            n += 1
        return n


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fan_out(target, args: tuple, seconds: float, server_pid: int) -> tuple[float, float, float]:
    """Run `target` in CLIENTS processes; (operations per second, server CPU seconds, client
    CPU seconds): the clients share the machine with the server."""
    start_at = time.time() + 1.0
    clients = _children_cpu_seconds()
    with mp.get_context("fork").Pool(CLIENTS) as pool:
        pending = pool.starmap_async(target, [(*args, seconds, start_at)] * CLIENTS)
        time.sleep(max(0.0, start_at - time.time()))
        cpu = _cpu_seconds(server_pid)
        counts = pending.get()
        cpu = _cpu_seconds(server_pid) - cpu
    return sum(counts) / seconds, cpu, _children_cpu_seconds() - clients


def _serve(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{argv} did not start")


def _specs(n: int, prefix: str) -> list[wire.RecordSpec]:
    return [wire.RecordSpec(key=f"{prefix}{i}", command="true") for i in range(n)]


def http_rates(url: str, data_dir: Path, batches: list[int], seconds: float) -> dict[str, float]:
    """Records/s, and server and client CPU µs/record, over HTTP per batch size; then the time
    to submit 100,000 records."""
    out: dict[str, float] = {}
    with (
        server(url, data_dir, TOKEN) as (base, pid),
        FarmhandClient(base, TOKEN, timeout=120) as client,
    ):
        campaign = client.create_campaign("throughput")
        client.submit(campaign.id, _specs(int(seconds * QUEUE_PER_SECOND), "r"))
        for batch in batches:
            rate, cpu, clients = fan_out(claim_loop, (base, batch), seconds, pid)
            out[f"http_{batch}"] = rate
            out[f"cpu_{batch}"] = cpu / (rate * seconds) * 1e6
            out[f"clients_{batch}"] = clients / (rate * seconds) * 1e6
        # Bulk submission last, so its ready records do not sit in the claims' queue.
        campaign = client.create_campaign("bulk")
        specs = _specs(100_000, "b")
        began = time.perf_counter()
        client.submit(campaign.id, specs)
        out["submit_100k_s"] = time.perf_counter() - began
    return out


def _direct_loop(db: Database, agent: int, batch: int, stop: float) -> int:
    done = 0
    while time.perf_counter() < stop:
        with db.write() as s:
            got = claim.claim(s, agent_id=agent, max_records=batch, clock=utcnow, ttl=60)
        if not got:
            raise RuntimeError("the queue ran dry: raise QUEUE_PER_SECOND")
        with db.write() as s:
            if batch == 1:
                item = wire.RunReport(run_id=got[0].run_id, token=got[0].token)
                runs.report(s, item=item, now=utcnow())
            else:
                reports = [wire.RunReport(run_id=x.run_id, token=x.token) for x in got]
                runs.report_many(s, now=utcnow(), reports=reports)
        done += len(got)
    return done


def direct_rates(url: str, batches: list[int], seconds: float) -> dict[str, float]:
    """The ceiling: the same claim and report functions on the database, no HTTP, in one
    process, the better of one thread and CLIENTS threads (SQLite's writers take turns, so
    more threads only contend; PostgreSQL's overlap their round trips)."""
    db = migrated(url)  # the schema a server runs on: create_all hid issue 13's index
    out: dict[str, float] = {}
    try:
        with db.write() as s:
            campaign = campaigns.create(s, spec=wire.CampaignCreate(name="direct"))
            agent = agents.register(
                s, body=wire.AgentRegister(name="d", host="h", slots=32), token_id=0, now=utcnow()
            ).id
        specs = _specs(int(seconds * QUEUE_PER_SECOND * 2), "d")  # two runs per batch size
        for start in range(0, len(specs), wire.MAX_RECORDS_PER_REQUEST):
            body = wire.RecordsCreate(
                campaign_id=campaign.id, records=specs[start : start + wire.MAX_RECORDS_PER_REQUEST]
            )
            with db.write() as s:
                submit.create(
                    s,
                    body=body,
                    now=utcnow(),
                    default_max_attempts=3,
                    max_command_length=wire.MAX_COMMAND_LENGTH,
                )
        for batch in batches:
            for threads in (1, CLIENTS):
                began = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    loops = [
                        pool.submit(_direct_loop, db, agent, batch, began + seconds)
                        for _ in range(threads)
                    ]
                    done = sum(loop.result() for loop in loops)
                rate = done / (time.perf_counter() - began)
                if rate > out.get(f"direct_{batch}", 0):
                    out[f"direct_{batch}"], out[f"threads_{batch}"] = rate, threads
    finally:
        db.dispose()
    return out


def ping_rate(seconds: float) -> tuple[float, float]:
    """Requests/s of a trivial FastAPI route under the same uvicorn and client load, and the
    server's CPU µs per request."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(Path(__file__).parent),
        "ping_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    ping = _serve(argv, dict(os.environ), port)
    try:
        rate, cpu, _ = fan_out(_ping_loop, (f"http://127.0.0.1:{port}",), seconds, ping.pid)
        return rate, cpu / (rate * seconds) * 1e6
    finally:
        stop(ping)


def main() -> int:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (1 and 32)")
    args = parser.parse_args()
    batches = args.batch or [1, 32]
    ping, ping_cpu = ping_rate(args.seconds)
    print(
        f"HTTP ceiling: trivial FastAPI route, {CLIENTS} client processes: {ping:,.0f} req/s "
        f"(server CPU {ping_cpu:,.0f} µs/request)"
    )
    print(
        "targets: >= 500 records/s one at a time, >= 10,000/s in batches of 32, "
        "100,000 submitted in <= 5 s\n"
    )
    header = (
        f"{'backend':<11}{'batch':>6}{'HTTP rec/s':>12}{'direct rec/s':>14}{'thr':>4}{'ratio':>7}"
        f"{'HTTP req/s':>12}{'of ceiling':>12}{'CPU/rec: server':>17}{'clients':>10}"
    )
    print(header)
    print("-" * len(header))
    bulk = {}
    for backend in backends(args.backend):
        with (
            tempfile.TemporaryDirectory() as tmp,
            database(backend, Path(tmp), "http") as http_url,
            database(backend, Path(tmp), "direct") as direct_url,
        ):
            http = http_rates(http_url, Path(tmp) / "data", batches, args.seconds)
            direct = direct_rates(direct_url, batches, args.seconds)
        bulk[backend] = http["submit_100k_s"]
        for batch in batches:
            h, d = http[f"http_{batch}"], direct[f"direct_{batch}"]
            requests = h / batch * 2  # one claim and one report request per batch
            print(
                f"{backend:<11}{batch:>6}{h:>12,.0f}{d:>14,.0f}{direct[f'threads_{batch}']:>4}"
                f"{h / d:>7.0%}"
                f"{requests:>12,.0f}{requests / ping:>12.0%}"
                f"{http[f'cpu_{batch}']:>14,.0f} µs{http[f'clients_{batch}']:>7,.0f} µs"
            )
    print()
    for backend, took in bulk.items():
        print(f"bulk submission of 100,000 records over HTTP ({backend}): {took:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
