"""`make bench`: no-op commands through one real agent with 8 slots, next to `xargs -P 8`.

A real `farmhand server` (SQLite) and a real `farmhand agent --slots 8 --exit-when-idle`
process; N records whose command is `true`, run once with output archives (the default) and
once with `archive = false`. The time is from the agent's start to its exit (registration,
claims, runs, reports, archive uploads, deregistration). Beside it, the same N commands
through `xargs -P 8 sh -c true`: what the machine does without any bookkeeping. Numbers are
printed, never asserted. The target (DESIGN.md) is 60 % of xargs, and with archives on,
faster than Celery + Redis in the same run (`bench/celery_peer.py`, the `bench` extra).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
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


def agent_rate(url: str, env: dict[str, str], work: Path, n: int, *, archive: bool) -> float:
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
        began = time.perf_counter()
        subprocess.run(argv, env=env, check=True)
        elapsed = time.perf_counter() - began - 1.0  # less the idle second before it exits
        done = client.campaign(campaign.id).counts.get(wire.RecordState.done, 0)
        if done != n:
            raise RuntimeError(f"only {done} of {n} records are done")
        return n / elapsed


def main() -> None:
    """Print the three rates and the agent's share of xargs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10000)
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
            print(f"  xargs -P {SLOTS}               {base:8.0f} /s")
            rates = {}
            for archive in (False, True):
                work = Path(tmp) / f"work-{archive}"
                rate = rates[archive] = agent_rate(
                    url, client_env, work, args.records, archive=archive
                )
                label = "agent, archives on " if archive else "agent, archive = false"
                print(f"  {label:24} {rate:8.0f} /s   {100 * rate / base:5.1f} % of xargs")
            missing = celery_peer.why_missing()
            if missing is not None:
                print(f"  Celery + Redis           (not measured: {missing})")
            else:
                peer = celery_peer.celery_rate(args.records)
                print(
                    f"  Celery + Redis, 8 threads{peer:8.0f} /s   {100 * peer / base:5.1f} % of"
                    f" xargs; the agent with archives on does {rates[True] / peer:.2f}x"
                )
            print("  targets: archive = false >= 60 % of xargs; archives on > Celery")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
