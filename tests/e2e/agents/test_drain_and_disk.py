"""`farmhand agent` processes: SIGUSR1 drains, a second SIGINT kills, the disk guard pauses
claims and says why (log, heartbeat, `farmhand ls agents`)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import farmhand, runs_of, wait_for
from tests.e2e.conftest import StartAgent
from tests.runtime.test_drain import CHECKPOINTING

if TYPE_CHECKING:
    from tests.support.filesystems import SmallFilesystem

pytestmark = pytest.mark.e2e

#: Ignores the checkpoint signal and SIGTERM alike.
DEAF = "trap '' USR1 TERM; touch {dir}/started; while true; do sleep 0.1; done"


def test_sigusr1_drains_and_the_record_is_ready_at_once(
    live_server: LiveServer, tmp_path: Path, agents: StartAgent
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("drain")
    command = CHECKPOINTING.format(dir=tmp_path)
    client.submit(campaign.id, [wire.RecordSpec(key="long", command=command)])
    agent = agents(live_server, "a", "--checkpoint-signal", "USR1", "--checkpoint-grace", "60")
    wait_for(lambda: (tmp_path / "leader.pid").exists(), what="the command to start")
    agent.send_signal(signal.SIGUSR1)
    assert agent.wait(timeout=60) == 0
    # Released before the agent exited: ready now, no lease expiry, no attempt spent.
    (record,) = client.records(campaign_id=campaign.id)
    assert (record.state, record.attempts) == ("ready", 0)
    assert [r.state for r in runs_of(live_server)] == ["released"]
    assert int((tmp_path / "checkpoint").read_text()) >= 0
    log = (tmp_path / "agent-a.log").read_text()
    assert "received SIGUSR1: walltime drain" in log
    assert "sent SIGUSR1 to 1 running command(s) to checkpoint" in log


def test_a_second_sigint_ends_a_drain_at_once(
    live_server: LiveServer, tmp_path: Path, agents: StartAgent
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("deaf")
    client.submit(campaign.id, [wire.RecordSpec(key="deaf", command=DEAF.format(dir=tmp_path))])
    agent = agents(
        live_server,
        "a",
        *("--checkpoint-signal", "USR1", "--checkpoint-grace", "10m", "--term-grace", "10m"),
    )
    wait_for(lambda: (tmp_path / "started").exists(), what="the command to start")
    agent.send_signal(signal.SIGUSR1)
    wait_for(lambda: "to checkpoint" in (tmp_path / "agent-a.log").read_text(), what="the drain")
    agent.send_signal(signal.SIGINT)  # the drain would wait 10 minutes; this ends it now
    assert agent.wait(timeout=60) == 0
    (record,) = client.records(campaign_id=campaign.id)
    assert (record.state, record.attempts) == ("ready", 0)


def test_above_its_disk_limit_an_agent_claims_nothing_and_says_why(
    live_server_factory: Callable[..., LiveServer],
    tmp_path: Path,
    small_fs: SmallFilesystem,
    agents: StartAgent,
) -> None:
    server = live_server_factory(lease_ttl=1.5)  # a heartbeat every 0.5 s
    client = server.client()
    campaign = client.create_campaign("disk")
    agent = agents(
        server,
        "a",
        "--workdir",
        str(small_fs.path / "work"),
        "--disk-limit",
        "50%",
        "--poll",
        "1",
    )
    wait_for(lambda: ls_agents(server).get("a", "").startswith("claiming"), what="a heartbeat")
    small_fs.fill_to(60)
    status = wait_for(
        lambda: (s := ls_agents(server).get("a", "")).startswith("paused: disk") and s,
        what="the paused status in farmhand ls agents",
    )
    assert "limit 50%" in status
    log = tmp_path / "agent-a.log"
    assert "claiming nothing until space frees" in log.read_text()

    # Work arrives while it is paused: nothing is claimed. (A long poll begun before the
    # pause ends within --poll = 1 s; watch for three times that, by the server's clock.)
    paused_at = heartbeat_of(server, "a")
    wait_for(lambda: heartbeat_of(server, "a") > paused_at + 1.5, what="paused heartbeats")
    client.submit(campaign.id, [wire.RecordSpec(key="r", command="echo ok")])
    submitted_at = heartbeat_of(server, "a")
    wait_for(lambda: heartbeat_of(server, "a") > submitted_at + 3, what="more heartbeats")
    assert runs_of(server) == []
    (record,) = client.records(campaign_id=campaign.id)
    assert record.state == "ready"

    small_fs.free()  # space frees: it claims again by itself
    wait_for(
        lambda: next(client.records(campaign_id=campaign.id)).state == "done",
        what="the record to run once space is free",
    )
    assert "claiming again" in log.read_text()
    wait_for(lambda: ls_agents(server).get("a", "").startswith("claiming"), what="resumed status")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0


def ls_agents(server: LiveServer) -> dict[str, str]:
    """`farmhand ls agents`: each agent's STATUS column, by name."""
    lines = farmhand(server, "ls", "agents").stdout.splitlines()
    if lines == ["(none)"]:
        return {}
    start = lines[0].index("STATUS")
    return {line.split()[1]: line[start:].strip() for line in lines[1:]}


def heartbeat_of(server: LiveServer, name: str) -> float:
    (agent,) = [a for a in server.client().agents() if a.name == name]
    return agent.last_heartbeat.timestamp()
