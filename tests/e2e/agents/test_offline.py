"""Invariant 3 end to end: a server killed with -9 mid-campaign, an agent killed with -9 with
reports in its outbox — every result arrives, and nothing runs twice."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import agent_id, wait_for
from tests.e2e.conftest import StartAgent
from tests.e2e.witness import assert_done_once_without_overlap, runs_by_record

pytestmark = pytest.mark.e2e


def gated(tmp_path: Path, gate: str = "gate") -> str:
    """Notes each execution, waits for its gate file, then writes its result."""
    return (
        f'echo "$FARMHAND_RECORD_KEY" >> {tmp_path}/executions; '
        f"while [ ! -f {tmp_path}/{gate} ]; do sleep 0.05; done; "
        """printf '{"key": "%s"}' "$FARMHAND_RECORD_KEY" > results.json"""
    )


def executions(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "executions"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def spooled_reports(outbox: Path) -> int:
    """Reports on disk in an outbox: one per file, or several in a group file (written
    together, group commit)."""
    count = 0
    for path in outbox.glob("[0-9]*.json"):
        grouped = path.name.endswith(".group.json")
        count += len(json.loads(path.read_text())["entries"]) if grouped else 1
    return count


def test_server_killed_mid_campaign_loses_no_result(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, agents: StartAgent
) -> None:
    # Leases live 6 s unrenewed; after its restart the server gives live ones 6 s more.
    server = live_server_factory(process=True, lease_ttl=6, sweep_interval=0.5)
    client = server.client()
    campaign = client.create_campaign("offline")
    (tmp_path / "open").touch()
    quick = [
        wire.RecordSpec(key=f"q{i}", command=gated(tmp_path, "open"), priority=9) for i in range(2)
    ]
    slow = [wire.RecordSpec(key=f"s{i}", command=gated(tmp_path)) for i in range(6)]
    client.submit(campaign.id, quick + slow)
    agent = agents(server, "a", "--slots", "3", "--exit-when-idle", "5")
    # The two quick ones finish at once; three slow ones then wait at the gate.
    wait_for(
        lambda: (
            client.campaign(campaign.id).counts.get(wire.RecordState.done) == 2
            and sum(executions(tmp_path).values()) == 5
        ),
        what="two records done and three waiting at the gate",
    )
    server.stop(signal.SIGKILL)

    (tmp_path / "gate").touch()  # the three finish while the server is dead
    outbox = tmp_path / "work-a" / "outbox"
    wait_for(lambda: spooled_reports(outbox) == 3, what="three reports in the outbox")
    assert agent.poll() is None  # the agent keeps going without its server
    server.start()  # same port, same database

    assert agent.wait(timeout=120) == 0
    client = server.client()
    records = list(client.records(campaign_id=campaign.id))
    assert {r.key: (r.state, r.result) for r in records} == {
        r.key: ("done", {"key": r.key}) for r in quick + slow
    }
    assert all(r.attempts == 1 for r in records)
    assert executions(tmp_path) == Counter({r.key: 1 for r in quick + slow})  # none ran twice
    grouped = runs_by_record(client)
    assert_done_once_without_overlap(grouped)
    assert all(len(runs) == 1 for runs in grouped.values())  # not even a lost lease
    assert list(outbox.glob("[0-9]*.json")) == []


def test_an_agent_restarted_on_its_workdir_delivers_what_the_dead_one_left(
    live_server: LiveServer, tmp_path: Path, agents: StartAgent
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("left")
    client.submit(campaign.id, [wire.RecordSpec(key="only", command=gated(tmp_path))])
    first = agents(live_server, "a", "--slots", "1")
    first_id = wait_for(lambda: agent_id(live_server, "a"), what="registration")
    wait_for(lambda: executions(tmp_path)["only"] == 1, what="the command to start")
    live_server.stop()
    (tmp_path / "gate").touch()
    outbox = tmp_path / "work-a" / "outbox"
    (entry,) = wait_for(lambda: list(outbox.glob("[0-9]*.json")), what="the report in the outbox")
    assert json.loads(entry.read_text())["body"]["result"] == {"key": "only"}
    first.send_signal(signal.SIGKILL)  # the report is all that is left of it
    first.wait(timeout=30)
    live_server.start()
    client = live_server.client()

    # A new agent process, same work directory: it delivers before anything else.
    (tmp_path / "work-b").symlink_to(tmp_path / "work-a")
    second = agents(live_server, "b", "--slots", "1", "--exit-when-idle", "2")
    assert second.wait(timeout=120) == 0
    record = client.record(next(client.records(campaign_id=campaign.id)).id)
    assert (record.state, record.result, record.attempts) == ("done", {"key": "only"}, 1)
    assert record.runs is not None
    assert [(r.agent_id, r.state) for r in record.runs] == [(first_id, "done")]
    assert executions(tmp_path) == Counter({"only": 1})
    assert "delivering 1 report(s) an earlier agent left" in (tmp_path / "agent-b.log").read_text()
    assert list(outbox.glob("[0-9]*.json")) == []
