"""`make bench`: no-op commands through one real agent with 8 slots, next to `xargs -P 8`.

A real `farmhand server` (SQLite) and a real `farmhand agent --slots 8 --exit-when-idle`
process; N records whose command is `true`, run once with output archives (the default) and
once with `archive = false`. The time is from the agent's start to its exit (registration,
claims, runs, reports, archive uploads, deregistration). Beside it, the same N commands
through `xargs -P 8 sh -c true`: what the machine does without any bookkeeping. Numbers are
printed, never asserted. The target (DESIGN.md) is 60 % of xargs, and with archives on,
faster than Celery + Redis in the same run (`bench/celery_peer.py`, the `bench` extra).

Each agent row also gives the CPU time per record of the server and of the agent with its
commands, and the agent rows are repeated with the agent's work directory on a RAM disk
(`--ram-dir`, default /dev/shm when it exists): every record creates and removes its run
directory's files, and on a file system where that is slow (ext4 without a journal, like
this machine's, scans every inode freed in the last 30 s on each creation) the difference
shows the file system's share.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import celery_peer
from farmhand import wire
from farmhand.cli.demo import free_port, wait_until_up
from farmhand.client import FarmhandClient

TOKEN = "fh_bench_noop_token"
SLOTS = 8


def xargs_rate(n: int) -> float:
    """Commands per second through `xargs -P 8`, each `sh -c true` like an agent's."""
    lines = "".join("true\n" for _ in range(n)).encode()
    began = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(SLOTS), "-I", "{}", "sh", "-c", "{}"],
        input=lines,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return n / (time.perf_counter() - began)


@dataclass
class AgentRun:
    """One agent's pass over N records: its rate and CPU per record (µs)."""

    rate: float
    server_us: float
    agent_us: float

    def describe(self, base: float) -> str:
        """`  1234 /s   58.0 % of xargs  (CPU per record: server 600 µs, agent 2,000 µs)`."""
        return (
            f"{self.rate:8.0f} /s   {100 * self.rate / base:5.1f} % of xargs   (CPU per record:"
            f" server {self.server_us:,.0f} µs, agent + commands {self.agent_us:,.0f} µs)"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_rate(
    url: str, env: dict[str, str], work: Path, n: int, *, archive: bool, server_pid: int
) -> AgentRun:
    """Records per second through one agent process, from its start to its exit."""
    with FarmhandClient(url, TOKEN) as client:
        campaign = client.create_campaign(f"noop-{'archived' if archive else 'bare'}")
        specs = [
            wire.RecordSpec(key=f"r{i}", command="true", run_args={"archive": archive})
            for i in range(n)
        ]
        client.submit(campaign.id, specs)
        argv = [
            sys.executable,
            "-m",
            "farmhand",
            "agent",
            "--slots",
            str(SLOTS),
            "--campaign",
            str(campaign.id),
            "--workdir",
            str(work),
            "--exit-when-idle",
            "1",
            "--log-level",
            "warning",
        ]
        server_began = cpu_seconds(server_pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        subprocess.run(argv, env=env, check=True)
        elapsed = time.perf_counter() - began - 1.0  # less the idle second before it exits
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = cpu_seconds(server_pid) - server_began
        done = client.campaign(campaign.id).counts.get(wire.RecordState.done, 0)
        if done != n:
            raise RuntimeError(f"only {done} of {n} records are done")
        agent_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        return AgentRun(n / elapsed, 1e6 * server_cpu / n, 1e6 * agent_cpu / n)


def main() -> None:
    """Print the three rates and the agent's share of xargs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument(
        "--ram-dir",
        default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
        help="a RAM disk for the repeated agent rows (default /dev/shm; '' for none)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-noop-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "FARMHAND_ADMIN_TOKEN": TOKEN}
        server = subprocess.Popen(
            [sys.executable, "-m", "farmhand", "server", "--port", str(port),
             "--data-dir", str(Path(tmp) / "data"), "--log-level", "warning"],
            env=env,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with FarmhandClient(url, TOKEN) as client:
                wait_until_up(client, server)
            # A token file, as agents are meant to get it: a token in the environment would
            # cost each agent a re-exec at start (docs/agents.md, Tokens and file modes).
            token_file = Path(tmp) / "token"
            token_file.write_text(TOKEN)
            token_file.chmod(0o600)
            client_env = {
                **os.environ,
                "FARMHAND_SERVER": url,
                "FARMHAND_TOKEN_FILE": str(token_file),
            }
            base = xargs_rate(args.records)
            print(f"no-op commands, {args.records} of them, {SLOTS} at a time:")
            print(f"  {'xargs -P ' + str(SLOTS):35} {base:8.0f} /s")
            rates = {}
            places = [("", Path(tmp))]
            if args.ram_dir:
                places.append((" (RAM disk)", Path(args.ram_dir)))
            for where, root in places:
                with tempfile.TemporaryDirectory(prefix="farmhand-bench-work-", dir=root) as w:
                    for archive in (False, True):
                        run = agent_rate(
                            url,
                            client_env,
                            Path(w) / f"work-{archive}",
                            args.records,
                            archive=archive,
                            server_pid=server.pid,
                        )
                        rates.setdefault(archive, run.rate)  # the peers compare the plain rows
                        label = "agent, archives on" if archive else "agent, archive = false"
                        print(f"  {label + where:35} {run.describe(base)}")
            missing = celery_peer.why_missing()
            if missing is not None:
                print(f"  {'Celery + Redis':35} (not measured: {missing})")
            else:
                peer = celery_peer.celery_rate(args.records)
                print(
                    f"  {'Celery + Redis, 8 threads':35} {peer:8.0f} /s   {100 * peer / base:5.1f}"
                    f" % of xargs; the agent with archives on does {rates[True] / peer:.2f}x"
                )
            print("  targets: archive = false >= 60 % of xargs; archives on > Celery")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
