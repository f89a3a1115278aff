"""Claiming, in-process against a real server: prefetch, idle pacing, the live display."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from farmhand import wire
from farmhand.cli.display import render
from farmhand.runtime.agent import Agent, AgentConfig
from farmhand.runtime.resources.prefetch import AHEAD, MIN_SEEN
from farmhand.runtime.tally import snapshot
from tests.runtime.test_agent import Running, by_key, make_agent, submit
from tests.runtime.test_drain import RecordingClient

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe


def gated(tmp_path: Path, name: str) -> str:
    """A command that says it started, then waits for its gate file."""
    return (
        f"touch {tmp_path}/{name}.started; "
        f"while [ ! -f {tmp_path}/{name}.go ]; do sleep 0.05; done; echo '{{}}' > results.json"
    )


def test_prefetched_leases_wait_staged_for_a_free_slot(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    campaign_id = submit(
        client,
        wire.RecordSpec(key="a", command=gated(tmp_path, "a"), priority=1),
        wire.RecordSpec(key="b", command=gated(tmp_path, "b")),
    )
    agent = make_agent(live_server, tmp_path / "work", slots=1, prefetch=1, exit_when_idle=1.0)
    running = Running(agent)
    probe.wait_until(lambda: (tmp_path / "a.started").exists(), what="a to start")
    probe.wait_until(lambda: snapshot(agent).queued == 1, what="b to be queued")
    # The start of a command that goes on is sent once it lingered (runtime/starts.py).
    probe.wait_until(lambda: by_key(client, campaign_id)["a"].state == "running", what="a's start")
    records = by_key(client, campaign_id)
    assert records["b"].state == "claimed"  # leased, staged, but not started: one slot
    assert not (tmp_path / "b.started").exists()
    (tmp_path / "a.go").touch()
    probe.wait_until(lambda: (tmp_path / "b.started").exists(), what="b to take the slot")
    (tmp_path / "b.go").touch()
    assert running.finish(timeout=30) == 0
    assert {k: r.state for k, r in by_key(client, campaign_id).items()} == {
        "a": "done",
        "b": "done",
    }


def test_by_default_an_agent_claims_ahead_once_its_commands_are_short(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    quick = [wire.RecordSpec(key=f"q{i}", command="true", priority=10 - i) for i in range(MIN_SEEN)]
    campaign_id = submit(
        client,
        *quick,
        wire.RecordSpec(key="slow", command=gated(tmp_path, "slow"), priority=2),
        wire.RecordSpec(key="next", command=gated(tmp_path, "next"), priority=1),
    )
    agent = make_agent(live_server, tmp_path / "work", slots=1, exit_when_idle=1.0)
    assert agent.prefetch.auto and agent.prefetch.depth() == 0
    running = Running(agent)
    probe.wait_until(lambda: (tmp_path / "slow.started").exists(), what="slow to start")
    # Four commands that took milliseconds: leases are now held ahead of the one slot.
    probe.wait_until(lambda: snapshot(agent).queued == 1, what="next to be claimed ahead")
    assert agent.prefetch.depth() == AHEAD
    assert by_key(client, campaign_id)["next"].state == "claimed"
    assert not (tmp_path / "next.started").exists()
    (tmp_path / "slow.go").touch()
    probe.wait_until(lambda: (tmp_path / "next.started").exists(), what="next to take the slot")
    (tmp_path / "next.go").touch()
    assert running.finish(timeout=30) == 0
    assert {r.state for r in by_key(client, campaign_id).values()} == {"done"}


def test_idle_claims_wait_longer_and_longer_up_to_poll(
    live_server: LiveServer, tmp_path: Path
) -> None:
    with RecordingClient(live_server.url, live_server.admin_token) as recording:
        config = AgentConfig(
            server=live_server.url, workdir=tmp_path / "work", poll_wait=4.0, exit_when_idle=9.0
        )
        assert Agent(config, client=recording).run() == 0
    waits = [c["wait"] for c in recording.claims]
    # Ceilings 1, 2, 4, 4, …; each wait drawn from its ceiling's upper half (jitter).
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0
    assert max(waits) <= 4.0
    # The last poll is cut short by the idle deadline; nothing else asks more often.
    assert len(waits) <= 6


def test_display_shows_the_agent_as_it_is(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, probe: Probe
) -> None:
    live_server = live_server_factory(lease_ttl=1.5)  # a heartbeat every 0.5 s
    client = live_server.client()
    submit(client, wire.RecordSpec(key="relax-017", command=gated(tmp_path, "r")))
    agent = make_agent(
        live_server, tmp_path / "work", name="node7", slots=2, exit_when_idle=1.0, disk_limit=99.9
    )
    running = Running(agent)
    probe.wait_until(lambda: (tmp_path / "r.started").exists(), what="the command to start")
    probe.wait_until(
        lambda: agent.heartbeat is not None and agent.heartbeat.beats > 0, what="a heartbeat"
    )
    text = draw(agent)
    assert "farmhand agent node7 · working" in text
    assert f"{live_server.url} connected" in text
    assert "1 of 2 busy" in text
    assert "done 0 · failed 0 · released 0" in text
    assert "relax-017" in text and "running" in text
    assert f"{(tmp_path / 'work').resolve()}" in text and "limit 99.9%" in text
    assert "walltime  unlimited left" in text
    (tmp_path / "r.go").touch()
    probe.wait_until(lambda: agent.counts["done"] == 1, what="the report to be delivered")
    text = draw(agent)
    assert "done 1 · failed 0" in text and "nothing in hand" in text and "0 of 2 busy" in text
    assert running.finish(timeout=30) == 0


def draw(agent: Agent) -> str:
    console = Console(record=True, width=140)
    console.print(render(snapshot(agent)))
    return console.export_text()
