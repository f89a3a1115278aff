"""An idle agent's heartbeats: the server counts its claims as heartbeats, so it sends none
while it claims and holds no lease (issue 16: 1,000 idle agents)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from farmhand import wire
from tests.runtime.test_agent import Running, by_key, make_agent, submit

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe


def test_an_idle_agent_stays_live_on_its_claims_and_beats_while_it_holds_a_lease(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, probe: Probe
) -> None:
    """The server counts claims as heartbeats: an agent with no lease that claims every
    second (lease TTL 3 s: beats every 1 s) sends none, and is still live after three TTLs."""
    server = live_server_factory(lease_ttl=3)
    client = server.client()
    agent = make_agent(server, tmp_path / "work", exit_when_idle=None, poll_wait=1)
    running = Running(agent)
    try:
        probe.wait_until(lambda: agent.heartbeat is not None, what="the heartbeat thread")
        beat = agent.heartbeat
        assert beat is not None and agent.claims_keep_alive
        probe.wait_until(lambda: beat.skipped >= 9, timeout=30, what="three TTLs of beats skipped")
        assert beat.beats <= 1  # one may go out before the first claim does
        (me,) = [a for a in client.agents() if a.id == agent.agent_id]
        assert me.state == "active"
        # Moved by its claims (nine beat intervals after it registered), not by a beat.
        assert me.last_heartbeat - me.registered_at > timedelta(seconds=6)
        campaign = submit(client, wire.RecordSpec(key="busy", command="sleep 30"), name="busy")
        probe.wait_until(
            lambda: by_key(client, campaign)["busy"].state == "running", what="the run's start"
        )
        before = beat.beats
        # Two TTLs of beats while the lease is held (its slot-mate claims on meanwhile)...
        probe.wait_until(
            lambda: beat.beats >= before + 6, timeout=30, what="beats while a lease is held"
        )
        busy = by_key(client, campaign)["busy"]  # ...kept the lease: still its first run
        assert (busy.state, busy.attempts) == ("running", 1)
    finally:
        agent.stop("test over")
        running.finish(timeout=30)
