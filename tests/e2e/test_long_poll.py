"""Long-poll claims wait on an event, not on a worker thread."""

from __future__ import annotations

import threading

import httpx

from farmhand.agent import wire
from farmhand.agent.client import FarmhandClient
from tests.conftest import LiveServer

WAITERS = 60  # more than the server's 40 worker threads


def test_waiting_claims_hold_no_worker_thread_and_wake_on_submit(live_server_factory) -> None:
    # A re-check interval longer than the wait: only the wakeup can hand out work in time.
    server: LiveServer = live_server_factory(claim_poll_interval=120)
    admin = server.client()
    campaign = admin.create_campaign("lp")
    agents = [
        admin.register(wire.AgentRegister(name=f"w{i}", host="h", slots=1)).agent.id
        for i in range(WAITERS)
    ]
    got: dict[int, list[wire.Lease]] = {}
    started = threading.Barrier(WAITERS + 1)

    def wait_for_work(agent_id: int) -> None:
        with FarmhandClient(server.url, server.admin_token) as client:
            started.wait()
            got[agent_id] = client.claim(agent_id, 1, wait=45)

    threads = [threading.Thread(target=wait_for_work, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    started.wait()
    # While 60 claims wait, the server still answers sync routes that need a worker thread.
    for _ in range(5):
        assert httpx.get(server.url + "/healthz", timeout=10).json()["status"] == "ok"
        assert admin.campaign(campaign.id).counts[wire.RecordState.ready] == 0
    assert all(t.is_alive() for t in threads)  # still waiting: nothing to claim yet
    admin.submit(
        campaign.id, [wire.RecordSpec(key=f"k{i}", command="true") for i in range(WAITERS)]
    )
    for t in threads:
        t.join(timeout=40)  # well inside the 45 s wait: only a wakeup gets them out in time
    assert not any(t.is_alive() for t in threads)
    leased = [lease.record_id for leases in got.values() for lease in leases]
    assert len(leased) == WAITERS and len(set(leased)) == WAITERS
