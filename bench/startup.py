"""`make bench`: how fast the `farmhand` command starts, and how much memory it takes.

Each case runs RUNS times in a fresh process; the median time and the median peak RSS
(`ru_maxrss` of the child, from `wait4`) are printed beside the targets (DESIGN.md: agent
start ≤ 250 ms and ≤ 60 MB). Numbers are printed, never asserted.

- `farmhand --version` and `farmhand agent --help`: from starting the console script to its
  exit (the interpreter, and the imports the command needs).
- agent start: from starting `farmhand agent --server URL` to the arrival of its first HTTP
  request (the registration) at a listener on localhost, which records the time and answers
  nothing; then the agent is killed. Once with the token in a file (`FARMHAND_TOKEN_FILE`,
  what docs/agents.md advises), once in `FARMHAND_TOKEN` (the agent starts itself again
  without it first: `credentials.hide_and_reexec`).
- agent run: a real `farmhand server` (SQLite) and an agent that registers, runs a handful of
  `true` records and exits when idle: its peak RSS over a whole short life.

The measured install's `farmhand` package is compiled to bytecode first (`compileall`), as
`pip install` leaves it: an editable checkout holds only the bytecode earlier runs wrote, and
none where PYTHONDONTWRITEBYTECODE is set (it is on the development machines), so every start
compiled some 50 modules again (~80 ms of the agent's start there).

`--python` picks the interpreter whose `farmhand` is measured, e.g. an agent-only install
(`python -m venv /tmp/agentonly && /tmp/agentonly/bin/pip install .`: httpx and pydantic, none
of the server extra's packages); the server of the last case always runs from this one.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_MS = 250.0
TARGET_MB = 60.0
RUNS = 10
TOKEN = "fh_bench_startup_token"


def run_to_exit(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from start to exit, and peak RSS in MB, of one process."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def first_request(
    argv: list[str], env: dict[str, str], listener: socket.socket
) -> tuple[float, float]:
    """Seconds from starting an agent to the arrival of its first request at `listener`,
    and the agent's peak RSS in MB by then (it is killed once the request is in)."""
    arrived: list[float] = []

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            arrived.append(time.perf_counter())

    waiter = threading.Thread(target=accept, daemon=True)
    waiter.start()
    began = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waiter.join(timeout=30)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if not arrived:
        raise SystemExit(f"{' '.join(argv)}: no request arrived within 30 s")
    return arrived[0] - began, usage.ru_maxrss / 1024


def whole_run(farmhand: Path, env: dict[str, str], work: Path, records: int) -> float:
    """Peak RSS in MB of an agent that registers, runs `records` no-op records and exits."""
    from farmhand import wire
    from farmhand.cli.demo import free_port, wait_until_up
    from farmhand.client import FarmhandClient

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "farmhand", "server", "--port", str(port),
         "--data-dir", str(work / "data"), "--log-level", "warning"],
        env={**env, "FARMHAND_ADMIN_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with FarmhandClient(url, TOKEN) as client:
            wait_until_up(client, server)
            campaign = client.create_campaign("startup")
            specs = [wire.RecordSpec(key=f"r{i}", command="true") for i in range(records)]
            client.submit(campaign.id, specs)
        argv = [str(farmhand), "agent", "--server", url, "--workdir", str(work / "agent")]
        proc = subprocess.Popen(
            [*argv, "--exit-when-idle", "1", "--slots", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"the agent exited with {proc.returncode}")
        with FarmhandClient(url, TOKEN) as client:
            done = client.campaign(campaign.id).counts.get(wire.RecordState.done, 0)
        if done != records:
            raise SystemExit(f"the agent did {done} of {records} records")
        return usage.ru_maxrss / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)


def compile_bytecode(python: str) -> Path:
    """Compile the `farmhand` package `python` imports (see the module docstring); its
    directory."""
    where = subprocess.run(
        [python, "-c", "import farmhand, os; print(os.path.dirname(farmhand.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([python, "-m", "compileall", "-q", where], check=True, stdout=subprocess.DEVNULL)
    return Path(where)


def line(name: str, seconds: list[float], megabytes: list[float]) -> str:
    ms, mb = statistics.median(seconds) * 1000, statistics.median(megabytes)
    spread = f"{min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f}"
    return (
        f"{name:<44} {ms:6.0f} ms ({spread:>9}; target ≤ {TARGET_MS:.0f})"
        f"  {mb:5.1f} MB (target ≤ {TARGET_MB:.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs per case (default {RUNS})")
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter whose farmhand is measured"
    )
    args = parser.parse_args()
    farmhand = Path(args.python).parent / "farmhand"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    package = compile_bytecode(args.python)
    print(f"farmhand start-up: {farmhand} ({os.cpu_count()} cores), median of {args.runs} runs")
    print(f"(bytecode of {package} compiled first, as an install has it)")
    for name, argv in (
        ("farmhand --version", [str(farmhand), "--version"]),
        ("farmhand agent --help", [str(farmhand), "agent", "--help"]),
    ):
        results = [run_to_exit(argv, env) for _ in range(args.runs)]
        print(line(name, [r[0] for r in results], [r[1] for r in results]))

    with tempfile.TemporaryDirectory(prefix="farmhand-startup-") as tmp:
        work = Path(tmp)
        token_file = work / "token"
        token_file.write_text(TOKEN)
        token_file.chmod(0o600)
        listener = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        argv = [str(farmhand), "agent", "--server", url, "--workdir", str(work / "agent")]
        with listener:
            for name, extra in (
                ("agent start, token file", {"FARMHAND_TOKEN_FILE": str(token_file)}),
                ("agent start, FARMHAND_TOKEN", {"FARMHAND_TOKEN": TOKEN}),
            ):
                results = [
                    first_request(argv, {**env, **extra}, listener) for _ in range(args.runs)
                ]
                print(
                    line(
                        f"{name} (first request)", [r[0] for r in results], [r[1] for r in results]
                    )
                )
        rss = whole_run(farmhand, {**env, "FARMHAND_TOKEN_FILE": str(token_file)}, work, 20)
        name = "agent run (20 records, idle exit)"
        print(f"{name:<44} {'':>29}  {rss:5.1f} MB (target ≤ {TARGET_MB:.0f})")


if __name__ == "__main__":
    main()
