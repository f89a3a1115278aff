"""The worked example of docs/python.md, run as written against a live server and two real
agent processes: a sweep and a record go in, `as_completed` yields each record exactly once
while the agents finish them, and the results come back as a table."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import LiveServer
from tests.e2e.conftest import StartAgent

DOC = Path(__file__).resolve().parents[3] / "docs" / "python.md"
RELAX = """\
import argparse, json, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=float)
p.add_argument("--T", type=int)
args = p.parse_args()
assert open("Al.eam").read() == "potential\\n"
time.sleep(0.3)  # long enough that records end while the example already follows them
result = {"energy": round(-args.a * args.T / 100, 6), "converged": True}
json.dump(result, open("results.json", "w"))
"""


def documented_example() -> str:
    """The python block after the docs' "tested example" marker."""
    text = DOC.read_text()
    found = re.search(r"<!-- the tested example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert found, "docs/python.md has no tested example"
    return found.group(1)


def test_the_documented_example_runs_as_written(
    live_server: LiveServer, agents: StartAgent, tmp_path: Path
) -> None:
    (tmp_path / "relax.py").write_text(RELAX)
    (tmp_path / "Al.eam").write_text("potential\n")
    for name in ("n1", "n2"):
        agents(live_server, name, "--slots", "2", "--poll", "1")
    submitter = live_server.client().create_token("submitter", name="notebook").token
    env = live_server.client_env(submitter)
    run = subprocess.run(
        [sys.executable, "-c", documented_example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    *yielded, summary = run.stdout.strip().splitlines()
    keys = [line.split(" ", 1)[0] for line in yielded]
    # Every record once: the four of the sweep (default keys name every param) and "x".
    assert sorted(keys) == sorted(
        ["T=300,a=4.0", "T=300,a=4.05", "T=600,a=4.0", "T=600,a=4.05", "x"]
    )
    for line in yielded:
        _, params, state, result = re.match(r"(\S+) (\{.*?\}) (\w+) (.*)", line).groups()
        a, T = ast.literal_eval(params)["a"], ast.literal_eval(params)["T"]
        assert state == "done", line
        assert ast.literal_eval(result) == {"energy": round(-a * T / 100, 6), "converged": True}
    assert summary == "3 rows at T>=600; 5 records"
    client = live_server.client()
    (campaign,) = client.campaigns(name="eos")
    assert campaign.counts["done"] == 5 and campaign.params == ["T", "a"]
    assert sum(1 for s in client.snapshots() if s.size == len("potential\n")) == 1  # Al.eam once
