"""`make bench`: what 1,000 idle long-polling agents cost the server, and how soon a submitted
record reaches one of them.

For each backend: a real `farmhand server` process and 1,000 registered agents, each holding
a long-poll claim (`wait` 30 s, re-claiming when it ends) from one client process (asyncio +
httpx, one connection per agent). The first waits are staggered over one `wait`, so the
re-claims spread out as they would on a farm whose agents started at different times.

1. Idle: the server process's CPU time (utime + stime from /proc) over `--idle` seconds with
   nothing to claim, as a share of one core. Target: <= 5 %. Measured twice: with long polls
   only (`--wait`), and as `farmhand agent` runs by default: long polls of its default
   `--poll` and a heartbeat every lease_ttl / 3 (the server's default) unless its last
   claim, which the server counts as a heartbeat, went out recently enough — what 1,000
   idle agents started without options cost.
2. Submit -> claim: with the 1,000 waiting, one record is submitted at a time (`--submits`
   times); the latency is from the submit's answer to the answer of the claim that carries
   the record (p50, p99), and beside it the server's CPU per submit, which is where waking
   every waiter (a broadcast) would show. Target: 50 ms p50.

The server runs with its defaults (`--max-connections` 8192: one idle agent here holds one
connection, a real agent 2-4) and this process raises its own open-files limit for the
1,000 connections. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.claims import _cpu_seconds
from farmhand import wire
from farmhand.cli.demo import free_port, wait_until_up
from farmhand.client import FarmhandClient
from farmhand.runtime.agent import CLAIMS_KEEP_ALIVE as KEEP_ALIVE
from farmhand.runtime.config import AgentConfig
from farmhand.server.settings import Settings
from tests.support.databases import PostgresDatabase, postgres_problem

TOKEN = "fh_bench_idle_token"
API = "/api/v1"
#: The server's default lease TTL: agents beat every third of it.
LEASE_TTL = Settings.model_fields["lease_ttl"].default
#: Agents whose requests share one connection pool of the client.
AGENTS_PER_POOL = 25


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Farm:
    """`agents` long-polling claim loops in this process's event loop."""

    def __init__(
        self, base: str, agent_ids: list[int], wait: float, heartbeat: float | None = None
    ) -> None:
        self.base = base
        self.agent_ids = agent_ids
        self.wait = wait
        self.heartbeat = heartbeat  #: seconds between an agent's heartbeats; None: none
        self.beats = 0  #: heartbeats answered
        self.sent: dict[int, float] = {}  #: when each agent's last claim went out
        #: An agent holding no lease skips a beat while its last claim is this recent.
        self.spare = KEEP_ALIVE * LEASE_TTL
        self.claims = 0  #: claim requests answered
        self.arrivals: dict[str, asyncio.Future[float]] = {}  # record key -> answer time
        self.http = self._client(16, wait)  # the bench's own submits
        # httpx looks through its whole pool for each request: one pool of 2,000 connections
        # (a long poll holds one per agent, a heartbeat needs another) took a core of this
        # process and halved the rate of requests. Small pools, each for AGENTS_PER_POOL.
        self._pools = [
            self._client(2 * AGENTS_PER_POOL, wait)
            for _ in range(0, len(agent_ids), AGENTS_PER_POOL)
        ]

    def _client(self, connections: int, wait: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base + API,
            headers={"Authorization": f"Bearer {TOKEN}"},
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=None),
            timeout=wait + 30,
        )

    def _pool(self, agent_id: int) -> httpx.AsyncClient:
        return self._pools[self.agent_ids.index(agent_id) // AGENTS_PER_POOL]

    async def close(self) -> None:
        """Close every connection."""
        for client in [self.http, *self._pools]:
            await client.aclose()

    def expect(self, key: str) -> asyncio.Future[float]:
        """A future set to the time a claim's answer carries the record `key`."""
        future = asyncio.get_running_loop().create_future()
        self.arrivals[key] = future
        return future

    async def _agent(self, agent_id: int, first_wait: float) -> None:
        http, wait = self._pool(agent_id), first_wait
        while True:
            body = {"agent_id": agent_id, "max_records": 1, "wait": wait}
            self.sent[agent_id] = time.monotonic()
            r = await http.post("/leases", json=body)
            answered = time.perf_counter()
            r.raise_for_status()
            self.claims += 1
            wait = self.wait
            for lease in r.json()["leases"]:
                future = self.arrivals.pop(lease["key"], None)
                if future is not None and not future.done():
                    future.set_result(answered)
                done = await http.post(
                    f"/runs/{lease['run_id']}/complete", json={"token": lease["token"]}
                )
                done.raise_for_status()

    async def _beat(self, agent_id: int, first: float) -> None:
        """An idle agent's heartbeat: no runs held, the status it reports."""
        assert self.heartbeat is not None
        http = self._pool(agent_id)
        await asyncio.sleep(first)
        body = {"run_ids": [], "status": {"disk_used_percent": 41.5, "outbox": 0}}
        while True:
            if time.monotonic() - self.sent.get(agent_id, -1e9) >= self.spare:
                r = await http.post(f"/agents/{agent_id}/heartbeat", json=body)
                r.raise_for_status()
                self.beats += 1
            await asyncio.sleep(self.heartbeat)

    def start(self) -> list[asyncio.Task[None]]:
        """Start every agent's loops, the first waits (and beats) spread over one interval."""
        rng = random.Random(16)
        tasks = [
            asyncio.create_task(self._agent(a, rng.uniform(1.0, self.wait))) for a in self.agent_ids
        ]
        if self.heartbeat is not None:
            tasks += [
                asyncio.create_task(self._beat(a, rng.uniform(0.0, self.heartbeat)))
                for a in self.agent_ids
            ]
        return tasks


async def _measure(
    base: str, pid: int, agent_ids: list[int], args: argparse.Namespace, shape: Shape
) -> dict:
    farm = Farm(base, agent_ids, shape.wait, shape.heartbeat)
    tasks = farm.start()
    out: dict = {}
    try:
        await asyncio.sleep(args.settle)  # every claim sent, found nothing and went to sleep
        claims, beats = farm.claims, farm.beats
        cpu, began = _cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(args.idle)
        elapsed = time.perf_counter() - began
        out["idle_core"] = (_cpu_seconds(pid) - cpu) / elapsed
        out["reclaims_per_s"] = (farm.claims - claims) / elapsed
        out["beats_per_s"] = (farm.beats - beats) / elapsed
        if not shape.submits:
            return out
        campaign = (await farm.http.post("/campaigns", json={"name": "idle"})).json()["id"]
        after_answer, after_send = [], []
        cpu, began = _cpu_seconds(pid), time.perf_counter()
        for i in range(args.submits):
            key = f"r{i}"
            arrived = farm.expect(key)
            body = {"campaign_id": campaign, "records": [{"key": key, "command": "true"}]}
            sent = time.perf_counter()
            r = await farm.http.post("/records", json=body)
            answered = time.perf_counter()
            r.raise_for_status()
            claimed_at = await asyncio.wait_for(arrived, args.wait + 30)
            after_answer.append(claimed_at - answered)
            after_send.append(claimed_at - sent)
            await asyncio.sleep(0.2)  # let the winner's completion and any woken claims settle
        # Less what the same span would have cost idle: what the submits and claims added.
        baseline = out["idle_core"] * (time.perf_counter() - began)
        out["cpu_per_submit_ms"] = (_cpu_seconds(pid) - cpu - baseline) / args.submits * 1e3
        out["after_answer"] = after_answer
        out["after_send"] = after_send
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await farm.close()
    return out


@dataclass(frozen=True)
class Shape:
    """What each idle agent sends: a long poll of `wait` seconds, again and again, and
    (`heartbeat`, seconds) heartbeats; `submits`: whether submit -> claim is measured too."""

    label: str
    wait: float
    heartbeat: float | None
    submits: bool


def run(url: str, data_dir: Path, args: argparse.Namespace, shape: Shape) -> dict:
    """Start a server on `url`, register the agents, measure."""
    env = {**os.environ, "FARMHAND_ADMIN_TOKEN": TOKEN}
    port = free_port()
    argv = [sys.executable, "-m", "farmhand", "server", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), "--database-url", url, "--log-level", "warning"]
    server = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with FarmhandClient(base, TOKEN, timeout=120) as client:
            wait_until_up(client, server)
            agent_ids = [
                client.register(wire.AgentRegister(name=f"idle{i}", host="h", slots=1)).agent.id
                for i in range(args.agents)
            ]
        return asyncio.run(_measure(base, server.pid, agent_ids, args, shape))
    finally:
        server.terminate()
        server.wait()


def _raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main() -> int:
    """Run both measurements per backend and print them beside the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--wait", type=float, default=30.0, help="each long poll's wait (s)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idleness measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--submits", type=int, default=50)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    args = parser.parse_args()
    _raise_open_files(2 * args.agents + 256)
    backends = args.backend or ["sqlite", "postgresql"]
    if "postgresql" in backends and postgres_problem():
        print(f"skipping PostgreSQL: {postgres_problem()}")
        backends.remove("postgresql")
    # What `farmhand agent` sends by default: a long poll of --poll seconds, and a heartbeat
    # every lease_ttl / 3 unless its last claim went out within KEEP_ALIVE lease TTLs.
    defaults = Shape("agent defaults", AgentConfig.poll_wait, LEASE_TTL / 3, submits=False)
    shapes = [Shape(f"wait {args.wait:g} s", args.wait, None, submits=True), defaults]
    print(
        f"{args.agents:,} idle agents; targets: idle server <= 5 % of a core, submit -> claim "
        "<= 50 ms p50\n"
        f"'{shapes[0].label}': long polls only (submit -> claim measured here); "
        f"'{defaults.label}': long polls of --poll {defaults.wait:g} s and heartbeats every "
        f"{defaults.heartbeat:g} s when the last claim went out over "
        f"{KEEP_ALIVE * LEASE_TTL:g} s before, as `farmhand agent` sends them\n"
    )
    header = (
        f"{'backend':<11}{'agents send':<16}{'idle CPU':>9}{'claims/s':>10}{'beats/s':>9}"
        f"{'submit->claim p50':>19}{'p99':>9}{'from send p50':>15}{'CPU/submit':>12}"
    )
    print(header)
    print("-" * len(header))
    for backend in backends:
        for shape in shapes:
            with tempfile.TemporaryDirectory() as tmp:
                database = PostgresDatabase() if backend == "postgresql" else None
                url = database.url if database else f"sqlite:///{tmp}/idle.db"
                try:
                    out = run(url, Path(tmp) / "data", args, shape)
                finally:
                    if database is not None:
                        database.drop()
            row = (
                f"{backend:<11}{shape.label:<16}{out['idle_core']:>9.1%}"
                f"{out['reclaims_per_s']:>10.1f}{out['beats_per_s']:>9.1f}"
            )
            if shape.submits:
                answer, send = out["after_answer"], out["after_send"]
                row += (
                    f"{statistics.median(answer) * 1e3:>16.1f} ms"
                    f"{_percentile(answer, 0.99) * 1e3:>6.1f} ms"
                    f"{statistics.median(send) * 1e3:>12.1f} ms{out['cpu_per_submit_ms']:>9.1f} ms"
                )
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
