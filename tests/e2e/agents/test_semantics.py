"""Calculation semantics end to end: a real server process, real `farmhand agent` processes
and the `farmhand` CLI — dependencies with upstream failure and recovery, parents' results,
concurrent agents that never start a child early, dataset and campaign filters, timeouts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import FARMHAND, start_agent, wait_for

pytestmark = pytest.mark.e2e

#: Three levels and a diamond (top → left, right → join), with `left` failing until it is
#: fixed, a fourth level below the diamond, and a branch that never touches `left`.
DAG = """
[campaign]
name = "dag"
[campaign.defaults]
max_attempts = 2

[[records]]
key = "top"
command = '''printf '{"v": 1}' > results.json'''

[[records]]
key = "left"
parents = ["top"]
command = '''LEFT_COMMAND'''

[[records]]
key = "right"
parents = ["top"]
command = '''printf '{"v": 3}' > results.json'''

[[records]]
key = "join"
parents = ["left", "right"]
command = '''printf '{"left": %s, "right": %s}' "$(cat parents/left/results.json)" \
"$(cat parents/right/results.json)" > results.json'''

[[records]]
key = "deep"
parents = ["join"]
command = "test -f parents/join/results.json"

[[records]]
key = "solo"
parents = ["right"]
command = "cp parents/right/results.json results.json"
"""
BROKEN = """test "$FIX" = 1 || { echo "FIX is not set" >&2; exit 3; }; \
printf '{"v": 2}' > results.json"""
FIXED = """printf '{"v": 2}' > results.json"""


def cli(server: LiveServer, *args: str) -> str:
    """Run `farmhand ARGS…` as a user would; its stdout (a failure fails the test)."""
    r = subprocess.run(
        [*FARMHAND, *args], env=server.client_env(), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def start_agents(
    server: LiveServer, tmp_path: Path, *names: str, args: tuple = (), idle: float = 2
) -> list[subprocess.Popen]:
    """Start agents with two slots each that exit after `idle` seconds with nothing to do."""
    return [
        start_agent(server, tmp_path, name, "--slots", "2", "--exit-when-idle", str(idle), *args)
        for name in names
    ]


def run_agents(server: LiveServer, tmp_path: Path, *names: str, args: tuple = ()) -> None:
    """Start agents and wait until all of them ran out of work."""
    for agent in start_agents(server, tmp_path, *names, args=args):
        assert agent.wait(timeout=120) == 0


def records_of(client: FarmhandClient, name: str) -> dict[str, wire.Record]:
    """Every record of the latest version of campaign `name`, by key, with its runs."""
    latest = max(client.campaigns(name=name), key=lambda c: c.version)
    return {r.key: client.record(r.id) for r in client.records(campaign_id=latest.id)}


@pytest.mark.parametrize("fix", ["retry with a temporary run_arg", "submit --force"])
def test_a_failed_parent_fails_exactly_its_descendants_and_fixing_it_finishes_them(
    live_server: LiveServer, tmp_path: Path, fix: str
) -> None:
    client = live_server.client()
    dag = tmp_path / "dag.toml"
    dag.write_text(DAG.replace("LEFT_COMMAND", BROKEN))
    cli(live_server, "submit", str(dag))
    run_agents(live_server, tmp_path, "first")

    records = records_of(client, "dag")
    assert {k: (r.state, r.error) for k, r in records.items()} == {
        "top": ("done", None),
        "left": ("failed", "exit code 3"),
        "right": ("done", None),
        "join": ("failed", "upstream failed: left"),
        "deep": ("failed", "upstream failed: left"),
        "solo": ("done", None),
    }
    assert records["solo"].result == {"v": 3}  # parents/right/results.json, copied
    assert [r.state for r in records["left"].runs or []] == ["failed", "failed"]
    assert records["join"].runs == [] and records["deep"].runs == []

    if fix == "submit --force":
        dag.write_text(DAG.replace("LEFT_COMMAND", FIXED))
        # Only `left` changed: its failed descendants wait for it again, unreplaced.
        assert cli(live_server, "submit", str(dag), "--force") == (
            "submitted 0 records to dag:1; replaced 1 whose spec changed (queued again): left; "
            "skipped 5 whose keys already exist (5 unchanged: farmhand retry reruns records)\n"
        )
        assert records_of(client, "dag")["join"].state == "waiting"
    else:
        out = cli(live_server, "retry", "left", "--campaign", "dag", "--run-arg", 'env={"FIX": 1}')
        assert out == "re-queued 1 records\nreopened 2 descendants that had failed upstream\n"
        assert records_of(client, "dag")["join"].state == "waiting"
    run_agents(live_server, tmp_path, "second")

    records = records_of(client, "dag")
    assert {k: r.state for k, r in records.items()} == dict.fromkeys(records, "done")
    assert records["join"].result == {"left": {"v": 2}, "right": {"v": 3}}
    left = records["left"]
    assert left.runs is not None
    if fix == "submit --force":
        assert left.command == FIXED
    else:
        # The temporary run_args stayed on the run that used them and left the record.
        assert left.runs[-1].run_args == {"env": {"FIX": 1}}
        assert left.temporary_run_args is None and left.derived_run_args == {"max_attempts": 2}
    (campaign,) = client.campaigns(name="dag")
    assert campaign.finished_at is not None


def test_concurrent_agents_never_start_a_child_before_its_parents_are_done(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Four levels of five records, each below level 0 with two parents from the level
    above; three agents with two slots each race for them. Level 0 waits at a gate until
    two agents hold its records, so the race is real whatever the machine's load (one
    agent quick enough could otherwise take every record in turn)."""
    client = live_server.client()
    campaign = client.create_campaign("layers")
    gate = tmp_path / "gate"
    # The agents are registered and long-polling before any work exists, so that level 0
    # is shared out between them at once.
    agents = start_agents(live_server, tmp_path, "a1", "a2", "a3", idle=5)
    wait_for(lambda: len(client.agents()) == 3, what="three registered agents")
    specs = []
    for level in range(4):
        for i in range(5):
            parents: list[str | int] = (
                [f"L{level - 1}-{i}", f"L{level - 1}-{(i + 1) % 5}"] if level else []
            )
            command = "sleep 0.3" if level else f"while [ ! -e {gate} ]; do sleep 0.05; done"
            specs.append(wire.RecordSpec(key=f"L{level}-{i}", command=command, parents=parents))
    client.submit(campaign.id, specs)

    def holders() -> set[int]:
        running = client.runs_page(state="running", limit=100).items
        return {run.agent_id for run in running}

    wait_for(lambda: len(holders()) >= 2, what="level 0 held by two agents")  # 2 slots each
    gate.touch()
    for agent in agents:
        assert agent.wait(timeout=120) == 0

    records = {r.key: client.record(r.id) for r in client.records(campaign_id=campaign.id)}
    assert {r.state for r in records.values()} == {wire.RecordState.done}
    agents_used = {run.agent_id for r in records.values() for run in r.runs or []}
    assert len(agents_used) > 1  # the race was real: more than one agent took part
    for record in records.values():
        for run in record.runs or []:
            assert run.started_at is not None
            for key in record.parents:
                (parent_done,) = [p for p in records[key].runs or [] if p.state == "done"]
                assert parent_done.ended_at is not None
                assert run.started_at >= parent_done.ended_at, (record.key, key)


def test_agents_claim_only_their_campaigns_and_datasets(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    spec = wire.RecordSpec
    assert cli(live_server, "campaign", "new", "prod") == "prod:1\n"
    assert cli(live_server, "campaign", "new", "prod", "--based-on", "prod:1") == "prod:2\n"
    old, new = client.campaigns(name="prod")
    client.submit(old.id, [spec(key="a-old", command="true", dataset="a")])
    client.submit(
        new.id,
        [
            spec(key="a1", command="true", dataset="a"),
            spec(key="a2", command="true", dataset="a"),
            spec(key="b1", command="true", dataset="b"),
            spec(key="none", command="true"),
            spec(
                key="slow",
                command="sleep 1000",
                dataset="a",
                run_args={"timeout": 1, "max_attempts": 1},
            ),
        ],
    )
    # `prod` is resolved once, at start, to its latest version.
    run_agents(live_server, tmp_path, "only-a", args=("--campaign", "prod", "--dataset", "a"))

    states = {r.key: r.state for c in (old, new) for r in client.records(campaign_id=c.id)}
    assert states == {
        "a-old": "ready",
        "a1": "done",
        "a2": "done",
        "b1": "ready",
        "none": "ready",
        "slow": "failed",
    }
    slow = records_of(client, "prod")["slow"]
    assert slow.error == "timed out after 1 s"
    assert [(r.state, r.error) for r in slow.runs or []] == [("failed", "timed out after 1 s")]

    run_agents(
        live_server,
        tmp_path,
        "b-and-old",
        args=("--campaign", "prod:1", "--campaign", "prod:2", "--dataset", "b", "--dataset", "a"),
    )
    states = {r.key: r.state for c in (old, new) for r in client.records(campaign_id=c.id)}
    assert (states["a-old"], states["b1"], states["none"]) == ("done", "done", "ready")
    listed = json.loads(cli(live_server, "ls", "records", "--dataset", "b", "--json"))
    assert [(r["key"], r["state"]) for r in listed] == [("b1", "done")]
