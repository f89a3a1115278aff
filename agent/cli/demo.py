"""`farmhand demo`: a throwaway server, a sample campaign and two agents, end to end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from farmhand import wire
from farmhand.client import FarmhandClient, ServerUnavailable

FARMHAND = [sys.executable, "-m", "farmhand"]
FINAL = {wire.RecordState.done, wire.RecordState.failed, wire.RecordState.cancelled}


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(client: FarmhandClient, server: subprocess.Popen, timeout: float = 30) -> None:
    """Poll /healthz until the server answers; fail early if its process died."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            client.health()
            return
        except ServerUnavailable:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {timeout:.0f} s") from None
            time.sleep(0.1)


def sample_campaign(count: int, scratch: Path) -> list[wire.RecordSpec]:
    """`count` small calculations: most succeed, one needs a retry, two fail for good."""
    specs = []
    for n in range(1, count + 1):
        command = (
            f'sleep 0.$((RANDOM % 4)); printf \'{{"n": {n}, "square": {n * n}}}\' '
            f"> results.json; echo computed {n}"
        )
        specs.append(wire.RecordSpec(key=f"square-{n:03d}", command=command))
    marker = scratch / "flaky-once"
    specs.append(
        wire.RecordSpec(
            key="flaky",
            command=f"if [ -e {marker} ]; then echo second try works; else touch {marker}; "
            "echo 'first attempt fails on purpose' >&2; exit 1; fi",
        )
    )
    specs.append(
        wire.RecordSpec(
            key="always-fails",
            command="echo 'this one fails on purpose' >&2; exit 3",
            run_args={"max_attempts": 2},
        )
    )
    specs.append(wire.RecordSpec(key="bad-results", command="echo '{not json' > results.json"))
    return specs


def _progress(campaign: wire.Campaign) -> str:
    counts = {s.value: n for s, n in campaign.counts.items() if n}
    return "  ".join(f"{state} {n}" for state, n in counts.items())


def run(records: int = 60, agents: int = 2, keep: bool = False) -> int:
    """Run the demo; returns the exit status (0 when every record reached a final state)."""
    root = Path(tempfile.mkdtemp(prefix="farmhand-demo-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = "fh_demo_" + os.urandom(12).hex()
    env = {
        **os.environ,
        "FARMHAND_ADMIN_TOKEN": token,
        "FARMHAND_SERVER": url,
        "FARMHAND_TOKEN": token,
    }
    print(f"farmhand demo: server at {url}, data in {root}")
    # A kept server outlives this command: its log goes to a file, not to this terminal,
    # and it runs in its own session, so the terminal's Ctrl-C does not reach it.
    log = open(root / "server.log", "ab") if keep else None  # noqa: SIM115 - the server's
    server = subprocess.Popen(
        [
            *FARMHAND,
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(root / "data"),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=keep,
    )
    workers: list[subprocess.Popen] = []
    kept = False
    try:
        with FarmhandClient(url, token) as client:
            wait_until_up(client, server)
            campaign = client.create_campaign(
                "demo",
                software="farmhand-demo",
                # Retried at once: the demo's agents exit when idle for 2 s (retry_delay's
                # default of 2 s, doubling, would outlast them).
                defaults={"max_attempts": 3, "retry_delay": 0},
            )
            answer = client.submit(campaign.id, sample_campaign(records, root))
            print(f"submitted {answer.created} records to campaign demo v{campaign.version}")
            for i in range(agents):
                workers.append(
                    subprocess.Popen(
                        [
                            *FARMHAND,
                            "agent",
                            "--slots",
                            "4",
                            "--name",
                            f"demo-agent-{i + 1}",
                            "--workdir",
                            str(root / f"agent-{i + 1}"),
                            "--exit-when-idle",
                            "2",
                        ],
                        env=env,
                        stderr=subprocess.DEVNULL,
                    )
                )
            print(f"started {agents} agents with 4 slots each")
            last = ""
            deadline = time.monotonic() + 120
            while True:
                campaign = client.campaign(campaign.id)
                line = _progress(campaign)
                if line != last:
                    print("  " + line)
                    last = line
                if sum(campaign.counts.get(s, 0) for s in FINAL) == answer.created:
                    break
                if time.monotonic() > deadline:
                    print("farmhand demo: records did not finish within 120 s", file=sys.stderr)
                    return 1
                time.sleep(0.25)
            for worker in workers:
                worker.wait(timeout=30)
            print("\nfinal counts by state:")
            for state, n in campaign.counts.items():
                if n:
                    print(f"  {state.value:10} {n}")
            failed = client.records_page(campaign_id=campaign.id, state=wire.RecordState.failed)
            for record in failed.items:
                print(f"  failed: {record.key}: {record.error}")
            if keep:
                _print_kept(url, token, root, server.pid)
                kept = True
            else:
                print(f"\nAPI docs were at {url}/docs  (try `farmhand server` and open /docs)")
        return 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)
        if log is not None:
            log.close()
        if not kept:
            server.terminate()
            server.wait(timeout=30)
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _print_kept(url: str, token: str, root: Path, pid: int) -> None:
    """How to reach the server `--keep` leaves running, and how to stop it."""
    print(
        f"\nthe server keeps running (pid {pid}): {url}\n"
        f"  status pages at {url}/ (log in with the token), API docs at {url}/docs\n"
        f"  export FARMHAND_SERVER={url} FARMHAND_TOKEN={token}\n"
        f"  farmhand status; farmhand results --campaign demo\n"
        f"stop it with: kill {pid}   (its log: {root / 'server.log'})"
    )
