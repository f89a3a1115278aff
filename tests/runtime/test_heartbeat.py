"""The heartbeat thread against a real server process."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.cli.demo import free_port
from farmhand.client import FarmhandClient
from farmhand.runtime.heartbeat import HeartbeatThread

if TYPE_CHECKING:
    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe


def claim_leases(client: FarmhandClient, count: int) -> tuple[int, list[wire.Lease]]:
    """Submit `count` records, register an agent and claim them all."""
    campaign = client.create_campaign("hb")
    client.submit(campaign.id, [wire.RecordSpec(key=f"k{i}", command="true") for i in range(count)])
    agent = client.register(wire.AgentRegister(name="hb", host="test", slots=count)).agent
    leases = client.claim(agent.id, count)
    assert len(leases) == count
    return agent.id, leases


def test_heartbeat_renews_every_held_lease_in_one_request(
    live_server: LiveServer, probe: Probe
) -> None:
    client = live_server.client()
    agent_id, leases = claim_leases(client, 2)
    cancelled: list[int] = []
    lost: list[int] = []
    beat = HeartbeatThread(
        client,
        agent_id,
        0.05,
        lambda: [lease.run_id for lease in leases],
        cancelled.append,
        lost.append,
    )
    beat.start()
    try:
        probe.wait_until(lambda: beat.beats >= 2, what="two heartbeats")
    finally:
        beat.stop(timeout=5)
    assert not beat.is_alive()
    assert beat.last_ack is not None
    assert beat.last_ack.renewed == 2
    assert beat.last_ack.lease_expires_at > max(lease.expires_at for lease in leases)
    assert cancelled == [] and lost == []


def test_heartbeat_dispatches_cancelled_and_lost_runs(
    live_server: LiveServer, probe: Probe
) -> None:
    client = live_server.client()
    agent_id, (to_cancel, to_finish) = claim_leases(client, 2)
    client.cancel([to_cancel.record_id])
    client.complete(to_finish.run_id, wire.RunComplete(token=to_finish.token))
    cancelled: list[int] = []
    lost: list[int] = []
    beat = HeartbeatThread(
        client,
        agent_id,
        0.05,
        lambda: [to_cancel.run_id, to_finish.run_id],
        cancelled.append,
        lost.append,
    )
    beat.start()
    try:
        probe.wait_until(lambda: cancelled and lost, what="a cancel and a loss")
    finally:
        beat.stop(timeout=5)
    assert set(cancelled) == {to_cancel.run_id}
    assert set(lost) == {to_finish.run_id}


def test_heartbeat_survives_errors_in_callbacks_and_api_errors(
    live_server: LiveServer, probe: Probe
) -> None:
    client = live_server.client()
    agent_id, (lease,) = claim_leases(client, 1)
    client.cancel([lease.record_id])

    def explode(run_id: int) -> None:
        raise RuntimeError(f"boom {run_id}")

    beat = HeartbeatThread(client, agent_id, 0.02, lambda: [lease.run_id], explode, explode)
    rejected = HeartbeatThread(client, 999_999, 0.02, list, explode, explode)  # 404
    beat.start()
    rejected.start()
    try:
        probe.wait_until(lambda: beat.beats >= 3, what="beats after a failing callback")
        probe.wait_until(lambda: rejected.failures >= 3, what="rejected beats")
        assert beat.is_alive() and rejected.is_alive()
    finally:
        beat.stop(timeout=5)
        rejected.stop(timeout=5)
    assert rejected.beats == 0


def test_heartbeat_survives_an_unreachable_server(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="farmhand.agent")
    with FarmhandClient(f"http://127.0.0.1:{free_port()}", "token", timeout=2) as client:
        beat = HeartbeatThread(client, 1, 0.02, lambda: [1], print, print)
        beat.start()
        try:
            probe.wait_until(lambda: beat.failures >= 3, what="failed beats")
            assert beat.is_alive()
        finally:
            beat.stop(timeout=5)
    assert not beat.is_alive()
    assert beat.beats == 0
    assert "heartbeat failed" in caplog.text


def test_stop_ends_a_long_interval_at_once() -> None:
    with FarmhandClient(f"http://127.0.0.1:{free_port()}", "token") as client:
        beat = HeartbeatThread(client, 1, 3600, list, print, print)
        beat.start()
        beat.stop(timeout=5)
        assert not beat.is_alive()
        assert beat.stopped and beat.failures == 0 and beat.beats == 0


def test_interval_must_be_positive() -> None:
    with (
        FarmhandClient("http://127.0.0.1:1", "token") as client,
        pytest.raises(ValueError, match="interval"),
    ):
        HeartbeatThread(client, 1, 0, list, print, print)


def test_the_first_beat_after_an_outage_says_the_server_is_back(
    live_server: LiveServer, probe: Probe
) -> None:
    back: list[bool] = []
    with FarmhandClient(live_server.url, live_server.admin_token) as client:
        agent_id, _ = claim_leases(client, 1)
        beat = HeartbeatThread(
            client, agent_id, 60, list, print, print, on_reconnect=lambda: back.append(True)
        )
        assert beat.beat() is not None and back == []  # no outage yet: nothing to say
        live_server.stop()
        assert beat.beat() is None and "cannot reach" in (beat.last_error or "")
        live_server.start()
        assert beat.beat() is not None
    assert back == [True] and beat.last_error is None


def test_a_status_that_cannot_be_told_does_not_cost_the_leases(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = live_server.client()
    agent_id, leases = claim_leases(client, 1)

    def broken() -> wire.AgentStatus:
        raise RuntimeError("statvfs exploded")

    beat = HeartbeatThread(
        client, agent_id, 60, lambda: [leases[0].run_id], print, print, status=broken
    )
    ack = beat.beat()
    assert ack is not None and ack.renewed == 1
    assert "heartbeat without it" in caplog.text


def test_a_beat_that_is_not_needed_is_skipped_but_a_poked_one_is_sent(
    live_server: LiveServer, probe: Probe
) -> None:
    client = live_server.client()
    agent_id, _ = claim_leases(client, 1)
    needed = threading.Event()
    beat = HeartbeatThread(
        client, agent_id, 0.05, list, print, print, unneeded=lambda: not needed.is_set()
    )
    beat.start()
    try:
        probe.wait_until(lambda: beat.skipped >= 3, what="skipped beats")
        assert beat.beats == 0
        beat.poke()  # the status changed: said at once, needed or not
        probe.wait_until(lambda: beat.beats == 1, what="the poked beat")
        needed.set()
        probe.wait_until(lambda: beat.beats >= 3, what="beats once needed")
    finally:
        beat.stop(timeout=5)


def test_a_beat_is_sent_when_whether_it_is_needed_cannot_be_told(
    live_server: LiveServer, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    client = live_server.client()
    agent_id, _ = claim_leases(client, 1)

    def broken() -> bool:
        raise RuntimeError("no idea")

    beat = HeartbeatThread(client, agent_id, 0.05, list, print, print, unneeded=broken)
    beat.start()
    try:
        probe.wait_until(lambda: beat.beats >= 2, what="beats")
    finally:
        beat.stop(timeout=5)
    assert beat.skipped == 0
    assert "cannot tell whether a heartbeat is needed" in caplog.text
