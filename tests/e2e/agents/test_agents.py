"""End to end: a real server process, real `farmhand agent` processes, real commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.cli.files.tasklists import key_of
from tests.conftest import LiveServer

FARMHAND = [sys.executable, "-m", "farmhand"]
pytestmark = pytest.mark.e2e


def wait_for(condition: Callable[[], object], timeout: float = 60, what: str = "condition"):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def start_agent(
    server: LiveServer, tmp_path: Path, name: str, *args: str, token: str | None = None
) -> subprocess.Popen:
    """`farmhand agent` as admin, or with `token`."""
    log = (tmp_path / f"agent-{name}.log").open("wb")
    return subprocess.Popen(
        [*FARMHAND, "agent", "--name", name, "--workdir", str(tmp_path / f"work-{name}"), *args],
        env=server.client_env(token),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def farmhand(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FARMHAND, *args],
        env=server.client_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def agent_id(server: LiveServer, name: str) -> int | None:
    return next((a.id for a in server.client().agents() if a.name == name), None)


def runs_of(server: LiveServer, **filters: object) -> list[wire.Run]:
    return server.client().runs_page(limit=1000, **filters).items


def test_two_agents_finish_every_record_exactly_once(
    live_server: LiveServer, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.txt"
    lines = ["# twenty squares"]
    lines += [
        f'printf \'{{"n": {n}, "square": {n * n}}}\' > results.json; echo n={n}'
        for n in range(1, 21)
    ]
    tasks.write_text("\n".join(lines) + "\n")
    farmhand(live_server, "submit", str(tasks), "--campaign", "c")
    agents = [
        start_agent(live_server, tmp_path, f"a{i}", "--slots", "3", "--exit-when-idle", "3")
        for i in range(2)
    ]
    for agent in agents:
        assert agent.wait(timeout=120) == 0
    status = json.loads(farmhand(live_server, "status", "--json").stdout)
    (campaign,) = status["campaigns"]
    assert campaign["counts"]["done"] == 20
    assert sum(campaign["counts"].values()) == 20
    records = json.loads(farmhand(live_server, "ls", "records", "--json").stdout)
    by_key = {key_of(command, Counter()): n for n, command in enumerate(lines[1:], start=1)}
    for record in records:
        n = by_key[record["key"]]
        assert record["result"] == {"n": n, "square": n * n}
        assert record["attempts"] == 1
    runs = runs_of(live_server)
    assert len(runs) == 20 and {r.state for r in runs} == {wire.RunState.done}
    assert all(r.stdout_tail and r.stdout_tail.startswith("n=") for r in runs)


def test_failures_are_retried_then_fail_with_the_reason(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("f", defaults={"max_attempts": 2})
    client.submit(
        campaign.id,
        [
            wire.RecordSpec(key="exit3", command="echo oops >&2; exit 3"),
            wire.RecordSpec(key="badjson", command="echo '{nope' > results.json"),
        ],
    )
    agent = start_agent(live_server, tmp_path, "a", "--slots", "2", "--exit-when-idle", "2")
    assert agent.wait(timeout=120) == 0
    by_key = {r.key: client.record(r.id) for r in client.records(campaign_id=campaign.id)}
    assert by_key["exit3"].state == wire.RecordState.failed
    assert by_key["exit3"].error == "exit code 3"
    assert [r.exit_code for r in by_key["exit3"].runs] == [3, 3]
    assert by_key["exit3"].runs[-1].stderr_tail == "oops\n"
    assert by_key["badjson"].state == wire.RecordState.failed
    assert "results.json is not valid JSON" in by_key["badjson"].error


def test_killed_agent_records_finish_on_another_agent(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server_factory(lease_ttl=2, sweep_interval=0.5)
    client = server.client()
    campaign = client.create_campaign("k")
    client.submit(
        campaign.id,
        [
            wire.RecordSpec(key=f"r{i}", command="sleep 2; echo finished > results.txt")
            for i in range(3)
        ],
    )
    doomed = start_agent(server, tmp_path, "doomed", "--slots", "3")
    doomed_id = wait_for(lambda: agent_id(server, "doomed"), what="agent registration")
    wait_for(
        lambda: len(runs_of(server, agent_id=doomed_id, state="running")) == 3,
        what="three running runs on the doomed agent",
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    rescuer = start_agent(server, tmp_path, "rescuer", "--slots", "3", "--exit-when-idle", "3")
    assert rescuer.wait(timeout=120) == 0
    rescuer_id = agent_id(server, "rescuer")
    for record in client.records(campaign_id=campaign.id):
        full = client.record(record.id)
        assert full.state == wire.RecordState.done
        assert [(r.agent_id, r.state) for r in full.runs] == [
            (doomed_id, wire.RunState.lost),
            (rescuer_id, wire.RunState.done),
        ]
        assert full.attempts == 2


def test_sigterm_releases_leases_at_once(live_server: LiveServer, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    client = live_server.client()
    campaign = client.create_campaign("t")
    command = (
        f'echo $$ > {pids}/"$FARMHAND_RECORD_KEY"; '
        'if [ "$FARMHAND_AGENT_NAME" = slow ]; then sleep 300; fi; echo ok'
    )
    client.submit(campaign.id, [wire.RecordSpec(key=f"r{i}", command=command) for i in range(2)])
    slow = start_agent(live_server, tmp_path, "slow", "--slots", "2")
    slow_id = wait_for(lambda: agent_id(live_server, "slow"), what="agent registration")
    wait_for(
        lambda: (
            len(runs_of(live_server, agent_id=slow_id, state="running")) == 2
            and len(list(pids.iterdir())) == 2
        ),
        what="two running commands",
    )
    shell_pids = [int(p.read_text()) for p in pids.iterdir()]
    slow.send_signal(signal.SIGTERM)
    assert slow.wait(timeout=30) == 0
    # Released at once: no lease expiry needed (the TTL is the default 60 s).
    for record in client.records(campaign_id=campaign.id):
        assert record.state == wire.RecordState.ready and record.attempts == 0
    assert {r.state for r in runs_of(live_server, agent_id=slow_id)} == {wire.RunState.released}
    for pid in shell_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    leftovers = list((tmp_path / "work-slow").rglob("stdout.txt"))
    assert leftovers == []  # partial run directories removed
    fast = start_agent(live_server, tmp_path, "fast", "--slots", "2", "--exit-when-idle", "2")
    assert fast.wait(timeout=120) == 0
    for record in client.records(campaign_id=campaign.id):
        assert record.state == wire.RecordState.done and record.attempts == 1
