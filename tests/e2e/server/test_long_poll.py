"""Long-poll claims wait on an event, not on a worker thread."""

from __future__ import annotations

import threading
import time

import httpx

from farmhand import wire
from farmhand.client import FarmhandClient
from tests.conftest import LiveServer

WAITERS = 60  # more than the server's 40 worker threads
WAIT = wire.MAX_WAIT_SECONDS  # each claim's long poll (60 s)
PROMPT = 20.0  # far from WAIT: only a wakeup hands every claim its record this soon


def test_waiting_claims_hold_no_worker_thread_and_wake_on_submit(live_server_factory) -> None:
    """Mutation: server/queue/wakeups.py `Wakeup.notify()` a no-op (the claims then get their
    records only in their last attempt, WAIT s after they began)."""
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
            got[agent_id] = client.claim(agent_id, 1, wait=WAIT)

    threads = [threading.Thread(target=wait_for_work, args=(a,), daemon=True) for a in agents]
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
    deadline = time.monotonic() + PROMPT  # one deadline for all: not PROMPT s per thread
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    waiting = sum(t.is_alive() for t in threads)
    assert not waiting, f"{waiting} claims still waiting {PROMPT} s after the submit"
    leased = [lease.record_id for leases in got.values() for lease in leases]
    assert len(leased) == WAITERS and len(set(leased)) == WAITERS
