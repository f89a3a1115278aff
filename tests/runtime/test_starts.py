"""Run starts travel in batches while the commands already run (issue 16): a command does
not wait for its start's answer, the server still sees claimed → running before the result,
and a start the server refuses drops the result. A real server, an in-process agent."""

from __future__ import annotations

from pathlib import Path

from farmhand import wire
from farmhand.runtime.agent import Agent, AgentConfig
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import wait_for
from tests.runtime.test_agent import Running
from tests.support.cutoff import Cutoff


def agent_through(
    server: LiveServer, relay: Cutoff, workdir: Path, *, linger: float = 0.0
) -> Agent:
    """An agent talking through `relay`; by default its starts do not linger, so even a
    command that ends at once sends its start (what most of these tests are about)."""
    config = AgentConfig(
        server=relay.url, token=server.admin_token, workdir=workdir, slots=2, exit_when_idle=1.0
    )
    agent = Agent(config)
    agent.starts.linger = linger
    return agent


def test_a_command_runs_before_its_start_is_answered_and_reports_after_it(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    """Mutation caught: waiting for the start's answer before launching the command (the
    command runs only once the held start timed out, and its run shows no start)."""
    began = tmp_path / "began"
    client = live_server.client()
    campaign = client.create_campaign("starts")
    client.submit(campaign.id, [wire.RecordSpec(key="k", command=f"touch {began}")])
    cutoff.hold("/runs/starts")
    running = Running(agent_through(live_server, cutoff, tmp_path / "work"))
    wait_for(began.exists, what="the command to run while its start is held back")
    (record,) = client.records(campaign_id=campaign.id)
    assert record.state == "claimed"  # the server has not heard of the start yet
    cutoff.restore()
    assert running.finish(timeout=60) == 0
    (run,) = client.record(record.id).runs or []
    assert (run.state, client.record(record.id).state) == ("done", "done")
    assert run.started_at is not None and run.ended_at is not None
    assert run.started_at <= run.ended_at  # the start arrived before the result


def test_a_refused_start_drops_the_result(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    """The record is cancelled while its start is held back: the server refuses the start,
    and the agent reports nothing for it (as a refused start used to stop the command)."""
    began = tmp_path / "began"
    client = live_server.client()
    campaign = client.create_campaign("refused")
    client.submit(
        campaign.id,
        [wire.RecordSpec(key="k", command=f"touch {began}; echo '{{}}' > results.json")],
    )
    cutoff.hold("/runs/starts")
    running = Running(agent_through(live_server, cutoff, tmp_path / "work"))
    wait_for(began.exists, what="the command to run")
    (record,) = client.records(campaign_id=campaign.id)
    client.cancel([record.id])
    cutoff.restore()
    assert running.finish(timeout=60) == 0
    got = client.record(record.id)
    assert got.state == "cancelled" and got.result is None
    assert running.agent.counts.get("done", 0) == 0


def test_a_start_that_cannot_reach_the_server_does_not_hold_the_result_back(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    """Invariant 3 first: a result must reach the durable outbox at once, so a start the
    server never heard of is not waited for; the report is accepted from `claimed`, and
    that run shows no start."""
    client = live_server.client()
    campaign = client.create_campaign("unheard")
    go = tmp_path / "go"  # the command ends only once its start was sent (and cut off)
    command = f"while [ ! -e {go} ]; do sleep 0.01; done; echo '{{}}' > results.json"
    client.submit(campaign.id, [wire.RecordSpec(key="k", command=command)])
    cutoff.cut("/runs/starts")
    running = Running(agent_through(live_server, cutoff, tmp_path / "work"))
    wait_for(lambda: cutoff.refused >= 1, what="the start to be sent and cut off")
    go.touch()
    assert running.finish(60) == 0
    (record,) = client.records(campaign_id=campaign.id)
    (run,) = client.record(record.id).runs or []
    assert (record.state, record.result, run.state) == ("done", {}, "done")
    assert run.started_at is None and cutoff.refused >= 1


def test_a_command_that_ends_before_its_start_is_sent_takes_it_along(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    """A start lingers (runtime/starts.py): a command that ends meanwhile withdraws it and
    its report carries the start, so the run costs no start request and still shows when it
    started, between its claim and its end."""
    client = live_server.client()
    campaign = client.create_campaign("short")
    client.submit(campaign.id, [wire.RecordSpec(key="k", command="echo '{}' > results.json")])
    cutoff.cut("/runs/starts")  # a start request would be refused and counted
    agent = agent_through(live_server, cutoff, tmp_path / "work", linger=60.0)
    assert Running(agent).finish(60) == 0
    (record,) = client.records(campaign_id=campaign.id)
    (run,) = client.record(record.id).runs or []
    assert (record.state, run.state, cutoff.refused) == ("done", "done", 0)
    assert run.started_at is not None and run.ended_at is not None
    assert run.claimed_at <= run.started_at <= run.ended_at
