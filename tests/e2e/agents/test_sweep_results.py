"""A 3 x 3 sweep from a campaign file, run by a real agent process, read back with
`farmhand results --format csv`: nine rows with the params and the result fields."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import FARMHAND, farmhand, start_agent

CAMPAIGN = """\
[campaign]
name = "al-eos"

[[sweep]]
key = "a{a}-T{T}"
command = '''printf '{"energy": {"total": %s}, "T": %s}' "$(( {T} / 100 ))" {T} > results.json'''
params = { a = [4.0, 4.05, 4.1], T = [300, 600, 900] }
"""


def test_a_sweep_runs_through_an_agent_into_a_results_table(
    live_server: LiveServer, tmp_path: Path
) -> None:
    file = tmp_path / "eos.toml"
    file.write_text(CAMPAIGN)
    submitted = farmhand(live_server, "submit", str(file))
    assert "submitted 9 records" in submitted.stdout
    agent = start_agent(live_server, tmp_path, "n1", "--slots", "3", "--exit-when-idle", "1")
    assert agent.wait(timeout=120) == 0, (tmp_path / "agent-n1.log").read_text()
    out = subprocess.run(
        [*FARMHAND, "results", "--campaign", "al-eos", "--format", "csv"],
        env=live_server.client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 9
    assert list(rows[0]) == [
        "key", "state", "T", "a", "result.T", "energy.total", "attempts", "runtime_s", "error",
    ]  # fmt: skip
    for row in rows:
        assert row["key"] == f"a{row['a']}-T{row['T']}" and row["state"] == "done", row
        assert row["energy.total"] == str(int(row["T"]) // 100) and row["result.T"] == row["T"]
    assert {(row["a"], row["T"]) for row in rows} == {
        (a, T) for a in ("4.0", "4.05", "4.1") for T in ("300", "600", "900")
    }
