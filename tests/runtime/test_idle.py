"""When an agent may call itself idle (`--exit-when-idle`): only once nothing runs, nothing
waits in its outbox, and the server itself said there is nothing to claim.

Both found by CI under load (stop 21), where a slow server or a slow delivery made an agent
exit with ready records left behind."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from farmhand import wire
from farmhand.runtime.agent import Agent, AgentConfig
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import wait_for
from tests.runtime.test_agent import Running
from tests.support.cutoff import Cutoff

IDLE = 1.0


class ClaimFailures(logging.Handler):
    """Counts the agent's failed claims."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        logger = logging.getLogger("farmhand.agent")
        logger.addHandler(self)
        logger.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("claim failed"):
            self.count += 1

    def close(self) -> None:
        logging.getLogger("farmhand.agent").removeHandler(self)
        super().close()


def start(server: LiveServer, cutoff: Cutoff, workdir: Path) -> Running:
    agent = Agent(
        AgentConfig(
            server=cutoff.url,
            token=server.admin_token,
            workdir=workdir,
            slots=1,
            exit_when_idle=IDLE,
        )
    )
    running = Running(agent)
    wait_for(lambda: agent.agent_id is not None, what="the agent to register")
    return running


def test_an_agent_that_could_not_reach_its_server_asks_again_before_it_exits_as_idle(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    """Mutation caught: exiting as idle whatever the last claim's outcome (the agent exits
    while the server is unreachable, or at its first loop after the server is back)."""
    client = live_server.client()
    campaign = client.create_campaign("unreachable")
    failures = ClaimFailures()
    try:
        running = start(live_server, cutoff, tmp_path / "work")
        cutoff.cut()
        began = time.monotonic()
        # A claim long-polls at most IDLE seconds: after twice that, none sent before the cut
        # is still open on the server (one would take the record and lose the answer).
        wait_for(
            lambda: failures.count >= 1 and time.monotonic() - began > 2 * IDLE,
            what="a failed claim and twice the idle time",
        )
        # Work arrives while the agent cannot ask for it, long after its idle time passed.
        client.submit(campaign.id, [wire.RecordSpec(key="late", command="true")])
        seen = failures.count
        wait_for(lambda: failures.count > seen, what="one more failed claim")
        assert running.thread.is_alive(), "the agent exited while it could not ask the server"
        cutoff.restore()
        assert running.finish(timeout=60) == 0
    finally:
        failures.close()
    (record,) = client.records(campaign_id=campaign.id)
    assert record.state == "done"


def test_an_agent_is_not_idle_while_its_outbox_holds_a_report(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    """A parent's report still in the outbox may make its child ready: the agent waits for
    the delivery, then claims the child. Mutation caught: counting only running attempts as
    busy (the agent exits as idle with the report just delivered and the child ready)."""
    client = live_server.client()
    campaign = client.create_campaign("outbox")
    gate = tmp_path / "gate"
    client.submit(
        campaign.id,
        [
            wire.RecordSpec(
                key="parent",
                command=f"touch {tmp_path}/began; while [ ! -f {gate} ]; do sleep 0.05; done",
            ),
            wire.RecordSpec(key="child", command="true", parents=["parent"]),
        ],
    )
    running = start(live_server, cutoff, tmp_path / "work")
    agent: Agent = running.agent
    wait_for(lambda: (tmp_path / "began").exists(), what="the parent to start")
    # Reports (and their archives) cannot get through; claims and heartbeats can, and find
    # nothing: the child waits for its parent's report.
    cutoff.cut("/runs/", "/snapshots/")
    gate.touch()
    wait_for(lambda: len(agent.outbox) == 1, what="the parent's report in the outbox")
    ended = time.monotonic()
    wait_for(lambda: time.monotonic() - ended > 3 * IDLE, what="three times the idle time")
    assert running.thread.is_alive(), "the agent exited with a report in its outbox"
    cutoff.restore()
    assert running.finish(timeout=60) == 0
    states = {r.key: r.state for r in client.records(campaign_id=campaign.id)}
    assert states == {"parent": "done", "child": "done"}


def test_an_idle_agent_still_exits(live_server: LiveServer, cutoff: Cutoff, tmp_path: Path) -> None:
    """The other side: with nothing to do and a server that answers, it exits on its own."""
    assert start(live_server, cutoff, tmp_path / "work").finish(timeout=60) == 0
    assert cutoff.refused == 0


def test_a_slow_registration_is_not_idleness(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    """Caught in CI (a timeout test's records all left ready): the idle clock ran from the
    agent's construction, so an agent whose registration took longer than --exit-when-idle
    (a loaded node, or --connect-timeout waiting for a restarting server) exited at once
    without asking for work. It must claim at least once."""
    client = live_server.client()
    campaign = client.create_campaign("slow-start")
    client.submit(campaign.id, [wire.RecordSpec(key="k", command="true")])
    cutoff.hold("/api/v1/agents")  # registration answers only after restore()
    agent = Agent(
        AgentConfig(
            server=cutoff.url, token=live_server.admin_token, workdir=tmp_path / "w",
            slots=1, exit_when_idle=IDLE,
        )
    )  # fmt: skip
    running = Running(agent)
    began = time.monotonic()
    wait_for(lambda: time.monotonic() - began > 3 * IDLE, what="longer than the idle limit")
    assert agent.agent_id is None  # still registering
    cutoff.restore()
    assert running.finish(timeout=60) == 0
    record = next(iter(client.records(campaign_id=campaign.id)))
    assert record.state == wire.RecordState.done
