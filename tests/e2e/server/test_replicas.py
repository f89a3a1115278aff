"""Several `farmhand server` replicas on one PostgreSQL database: agents split between them,
and long-polling claims on one replica woken by submissions through another (LISTEN/NOTIFY),
or found by polling when LISTEN/NOTIFY is off."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.server.queue.waking.relay import connect_params
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import start_agent, wait_for
from tests.e2e.witness import assert_done_once_without_overlap, runs_by_record
from tests.support.databases import PostgresDatabase
from tests.support.pg_backends import relay_backend, sql, terminate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("backend", ["postgresql"], indirect=True),
]

RECORDS = 2000
POLL = 30.0  # a re-check interval so long that only a wakeup explains a quick answer
WAIT = 30.0
QUIET = {"claim_poll_interval": POLL, "sweep_interval": 3600}  # no sweeper touching records


def database_url(server: LiveServer) -> str:
    return server.env["FARMHAND_DATABASE_URL"]


def replica_of(start: Callable[..., LiveServer], first: LiveServer, **settings) -> LiveServer:
    """A second server process on `first`'s database (the factory shares the admin token)."""
    return start(process=True, database_url=database_url(first), **settings)


def listening(server: LiveServer, url: str | None = None) -> int | None:
    """The backend pid of `server`'s LISTEN connection, once it listens."""
    assert server.process is not None
    return relay_backend(url or database_url(server), "listen", server.process.pid, "LISTEN")


@dataclass
class Claim:
    """A long-polling claim on a thread: what it got and when it answered."""

    leases: list[wire.Lease] | None = None
    answered_at: float | None = None


@contextmanager
def claim_in_wait(server: LiveServer, agent_id: int, url: str) -> Iterator[Claim]:
    """Start a claim with `wait` on `server` and return once its first attempt found nothing
    and committed, so that only a wakeup or a poll can answer it. Joins it on exit.

    The attempt is caught by holding a lock on the record table: the claim's backend shows
    up waiting for it; after the lock goes, that backend's transaction ends (state `idle`).
    """
    claim = Claim()

    def run() -> None:
        with FarmhandClient(server.url, server.admin_token) as client:
            claim.leases = client.claim(agent_id, 5, wait=WAIT)
            claim.answered_at = time.monotonic()

    thread = threading.Thread(target=run)
    with psycopg.connect(**connect_params(url, "test")) as locker:
        locker.execute("LOCK TABLE record IN EXCLUSIVE MODE")
        thread.start()
        blocked = wait_for(
            lambda: sql(
                url,
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND state = 'active'",
            ),
            what="the claim to wait for the record lock",
        )
        ((pid,),) = blocked
    wait_for(
        lambda: sql(url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle'", pid),
        what="the claim's first attempt to commit",
    )
    try:
        yield claim
    finally:
        thread.join(timeout=WAIT + 30)
    assert not thread.is_alive()


def submit_and_time(server: LiveServer, campaign_id: int, keys: list[str]) -> float:
    """Submit records through `server`; when the submission was acknowledged."""
    server.client().submit(campaign_id, [wire.RecordSpec(key=k, command="true") for k in keys])
    return time.monotonic()


def claim_across(a: LiveServer, b: LiveServer, keys: list[str]) -> tuple[list[wire.Lease], float]:
    """A claim long-polls on A (its first attempt found nothing) while `keys` are submitted
    through B: the leases it got, and seconds from the submit's acknowledgement to its answer."""
    campaign = a.client().create_campaign("across")
    me = a.client().register(wire.AgentRegister(name="w", host="h", slots=5)).agent.id
    with claim_in_wait(a, me, database_url(a)) as claim:
        submitted = submit_and_time(b, campaign.id, keys)
    assert claim.answered_at is not None
    return claim.leases or [], claim.answered_at - submitted


def test_two_replicas_share_agents_and_finish_every_record_once(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    a = live_server_factory(process=True)
    b = replica_of(live_server_factory, a)
    campaign = a.client().create_campaign("split")
    agents = {
        f"{replica}{i}": start_agent(
            server, tmp_path, f"{replica}{i}", "--slots", "4", "--exit-when-idle", "5"
        )
        for replica, server in (("a", a), ("b", b))
        for i in range(2)
    }
    # Half through each replica, in batches, while the agents already long-poll on both.
    for start in range(0, RECORDS, 250):
        server = a if start % 500 == 0 else b
        keys = [f"r{n}" for n in range(start, start + 250)]
        submit_and_time(server, campaign.id, keys)
    for name, agent in agents.items():
        assert agent.wait(timeout=300) == 0, name
    assert b.client().campaign(campaign.id).counts[wire.RecordState.done] == RECORDS
    grouped = runs_by_record(a.client())
    assert len(grouped) == RECORDS
    assert_done_once_without_overlap(grouped)
    # Every agent worked, so both replicas handed out leases.
    by_name = {agent.id: agent.name for agent in a.client().agents()}
    workers = {by_name[run.agent_id] for runs in grouped.values() for run in runs}
    assert workers == set(agents)


def test_a_claim_on_one_replica_wakes_on_a_submit_through_another(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    a = live_server_factory(process=True, **QUIET)
    b = replica_of(live_server_factory, a, **QUIET)
    wait_for(lambda: listening(a), what="replica A to LISTEN")
    leases, took = claim_across(a, b, ["k0", "k1"])
    assert len(leases) == 2
    # Only B's NOTIFY reaching A's listener explains an answer before A's next poll.
    assert took < POLL / 2


def test_a_terminated_listen_connection_comes_back_and_wakes_claims(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    a = live_server_factory(process=True, **QUIET)
    b = replica_of(live_server_factory, a, **QUIET)
    old = wait_for(lambda: listening(a), what="replica A to LISTEN")
    terminate(database_url(a), old)
    wait_for(lambda: listening(a) not in (None, old), what="replica A to LISTEN again")
    leases, took = claim_across(a, b, ["k0"])
    assert len(leases) == 1 and took < POLL / 2
    a.stop()
    assert a.log is not None
    log = a.log.read_text()
    assert log.count("LISTEN connection to PostgreSQL failed") == 1, log
    assert "LISTEN connection to PostgreSQL is back" in log


def test_notify_url_carries_wakeups_on_another_connection(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    signals = PostgresDatabase()  # stands in for the direct URL beside a pooled database_url
    try:
        a = live_server_factory(process=True, notify_url=signals.url, **QUIET)
        b = replica_of(live_server_factory, a, notify_url=signals.url, **QUIET)
        wait_for(lambda: listening(a, signals.url), what="replica A to LISTEN on notify_url")
        assert listening(a) is None  # not on the database itself
        leases, took = claim_across(a, b, ["k0"])
        assert len(leases) == 1 and took < POLL / 2
        a.stop()
        b.stop()
    finally:
        signals.drop()


def test_without_listen_notify_claims_find_other_replicas_records_by_polling(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    a = live_server_factory(
        process=True, listen_notify=False, claim_poll_interval=0.5, sweep_interval=3600
    )
    b = replica_of(live_server_factory, a, **QUIET)
    wait_for(lambda: listening(b), what="replica B to LISTEN")  # B's NOTIFY goes unheard
    leases, took = claim_across(a, b, ["k0", "k1", "k2"])
    assert len(leases) == 3
    assert took < WAIT / 2  # found by A's own re-checks, well before the wait's last attempt
    assert listening(a) is None  # A holds no LISTEN connection
