"""Long-poll claims wait on an event, not on a worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from farmhand import wire
from farmhand.client import FarmhandClient
from tests.conftest import LiveServer

WAITERS = 60  # more than the server's 40 worker threads
WAIT = wire.MAX_WAIT_SECONDS  # each claim's long poll (60 s)
PROMPT = 20.0  # far from WAIT: only a wakeup hands every claim its record this soon


def test_waiting_claims_hold_no_worker_thread_and_wake_on_submit(live_server_factory) -> None:
    """Mutation: server/queue/waking/wakeups.py `Wakeup.notify()` a no-op (the claims then get their
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


def claim_attempts(server: LiveServer) -> float:
    """Claim transactions the server has run so far (its /metrics)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    (line,) = [x for x in text.splitlines() if x.startswith("farmhand_claim_seconds_count")]
    return float(line.split()[-1])


def test_idle_claims_cost_one_look_per_interval_not_a_claim_each(live_server_factory) -> None:
    """Claims waiting on an empty queue run no claim transactions while they wait: the server
    looks once per interval for the whole process (issue 16), and once it has found the queue
    quiet a wait that runs out answers without a last attempt. Mutations caught: capping each
    wait at the poll interval again (each waiter re-claims every 0.5 s: some 6 each); a wait
    that runs out claiming although the queue is quiet (2 each)."""
    server: LiveServer = live_server_factory(claim_poll_interval=0.5)
    admin = server.client()
    agents = [
        admin.register(wire.AgentRegister(name=f"idle{i}", host="h", slots=1)).agent.id
        for i in range(5)
    ]
    before = claim_attempts(server)
    got: list[list[wire.Lease]] = []

    def wait_idle(agent_id: int) -> None:
        with FarmhandClient(server.url, server.admin_token) as client:
            got.append(client.claim(agent_id, 1, wait=3))

    threads = [threading.Thread(target=wait_idle, args=(a,), daemon=True) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert got == [[]] * 5
    # One attempt on arrival (before the watch's first look), none when the wait runs out
    # (the watch found the queue quiet; one that looked late, on a loaded machine, may let
    # an end attempt through, but not all five).
    assert 5 <= claim_attempts(server) - before < 2 * 5


def test_a_lease_that_runs_out_wakes_a_waiting_claim(live_server_factory) -> None:
    """No sweep and no event: the queue watch sees the lost lease and wakes the waiting claim,
    which takes the record long before its wait ends. Mutation caught: the watch not waking
    (the claim gets the record only in its last attempt, WAIT s after it began)."""
    server: LiveServer = live_server_factory(
        lease_ttl=1, sweep_interval=3600, claim_poll_interval=0.2
    )
    admin = server.client()
    campaign = admin.create_campaign("lost")
    admin.submit(campaign.id, [wire.RecordSpec(key="k", command="true")])
    first, second = (
        admin.register(wire.AgentRegister(name=n, host="h", slots=1)).agent.id
        for n in ("gone", "waiting")
    )
    (lease,) = admin.claim(first, 1)  # and never renewed
    began = time.monotonic()
    (taken,) = admin.claim(second, 1, wait=WAIT)
    assert taken.record_id == lease.record_id and taken.attempt == 2
    assert time.monotonic() - began < PROMPT  # woken, not handed it by the last attempt


def gauge(server: LiveServer, name: str) -> float:
    """One unlabelled series of the server's /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    (line,) = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[-1])


def until(condition: Callable[[], bool], what: str) -> None:
    """Look again until `condition()` holds; fail after PROMPT seconds."""
    deadline = time.monotonic() + PROMPT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


def test_a_submit_of_one_record_wakes_one_waiting_claim(live_server_factory) -> None:
    """With K claims waiting, a submit of one record wakes one of them, which takes it; the
    others sleep on without a claim attempt (issue 16: idle agents cost nothing). Mutation
    caught: `Wakeup.notify(count)` waking every waiter, as before (all K then re-attempt:
    the attempts counted rise by K, not 1, before K - 1 are back waiting)."""
    waiters = 8
    server: LiveServer = live_server_factory(claim_poll_interval=120)  # no watch to muddle
    admin = server.client()
    campaign = admin.create_campaign("one")
    agents = [
        admin.register(wire.AgentRegister(name=f"w{i}", host="h", slots=1)).agent.id
        for i in range(waiters)
    ]
    got: dict[int, list[wire.Lease]] = {}
    leased = threading.Event()

    def wait_for_work(agent_id: int) -> None:
        with FarmhandClient(server.url, server.admin_token) as client:
            got[agent_id] = client.claim(agent_id, 1, wait=WAIT)
            if got[agent_id]:
                leased.set()

    threads = [threading.Thread(target=wait_for_work, args=(a,), daemon=True) for a in agents]
    for t in threads:
        t.start()
    until(lambda: gauge(server, "farmhand_claims_waiting") == waiters, "all claims waiting")
    before = claim_attempts(server)
    admin.submit(campaign.id, [wire.RecordSpec(key="k", command="true")])
    assert leased.wait(PROMPT), f"the record was not claimed within {PROMPT} s"
    # Whatever was woken has attempted once it is back to waiting (a woken claim that
    # found nothing waits again): K - 1 waiting means every other claim is settled.
    until(lambda: gauge(server, "farmhand_claims_waiting") == waiters - 1, "K - 1 waiting")
    assert claim_attempts(server) - before == 1
    assert sum(t.is_alive() for t in threads) == waiters - 1
    assert [lease.key for leases in got.values() for lease in leases] == ["k"]
    # The rest: a submit of K - 1 records wakes every one still waiting.
    admin.submit(
        campaign.id, [wire.RecordSpec(key=f"r{i}", command="true") for i in range(waiters - 1)]
    )
    deadline = time.monotonic() + PROMPT
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a claim slept through a submit for it"
    assert sorted(len(leases) for leases in got.values()) == [1] * waiters
