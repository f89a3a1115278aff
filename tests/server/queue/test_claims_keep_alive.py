"""A claim keeps its agent live as a heartbeat does (`agents.seen`, app.py's
`_hear_claimers`), so an agent that holds no lease need not heartbeat while it claims."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

from farmhand import wire
from farmhand.server.db import Database
from farmhand.server.queue import agents
from farmhand.server.tables import Agent
from tests.server.helpers import API, agent
from tests.support.agent_side import Probe

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def _register(db: Database, name: str) -> int:
    with db.write() as session:
        body = wire.AgentRegister(name=name, host="h", slots=1)
        return agents.register(session, body=body, token_id=0, now=T0).id


def _last_heartbeat(db: Database, agent_id: int) -> datetime:
    with db.read() as session:
        found = session.get(Agent, agent_id)
        assert found is not None
        return found.last_heartbeat.replace(tzinfo=found.last_heartbeat.tzinfo or timezone.utc)


def test_seen_moves_the_heartbeat_of_the_agents_named_and_not_stopped(db: Database) -> None:
    heard, other, stopped = (_register(db, name) for name in ("heard", "other", "stopped"))
    with db.write() as session:
        agents.stop(session, agent_id=stopped, now=T0)
    later = T0 + timedelta(seconds=40)
    with db.write_core() as conn:
        assert agents.seen(conn, agent_ids={heard, stopped}, now=later) == 1
    assert _last_heartbeat(db, heard) == later
    assert _last_heartbeat(db, other) == T0  # not named
    assert _last_heartbeat(db, stopped) == T0  # stopped: stays as its stop left it
    with db.write_core() as conn:  # a clock behind the stored time never moves it back
        assert agents.seen(conn, agent_ids={heard}, now=T0) == 0
    assert _last_heartbeat(db, heard) == later


def test_only_an_admitted_claim_counts(api: TestClient) -> None:
    claimers: set[int] = api.app.state.claimers  # type: ignore[attr-defined]
    a = agent(api)
    registered = api.post(f"{API}/agents", json={"name": "keep", "host": "h", "slots": 1}).json()
    assert registered["claims_keep_alive"] is True
    assert api.post(f"{API}/leases", json={"agent_id": a}).status_code == 200
    assert a in claimers  # written down within HEAR_EVERY (5 s at the default TTL)
    unknown = a + 1000
    assert api.post(f"{API}/leases", json={"agent_id": unknown}).status_code == 404
    stopping = registered["agent"]["id"]
    assert api.post(f"{API}/agents/{stopping}/stop").status_code == 200
    assert api.post(f"{API}/leases", json={"agent_id": stopping}).status_code == 409
    assert unknown not in claimers and stopping not in claimers


def test_a_claim_moves_the_agents_last_heartbeat(make_api: Callable[..., TestClient]) -> None:
    api = make_api(lease_ttl=0.6)  # claims written down every 0.1 s
    a = agent(api)

    def last_heartbeat() -> str:
        (found,) = [x for x in api.get(f"{API}/agents").json() if x["id"] == a]
        return found["last_heartbeat"]

    registered_at = last_heartbeat()
    Probe.wait_until(
        lambda: (
            api.post(f"{API}/leases", json={"agent_id": a}).status_code == 200
            and last_heartbeat() > registered_at
        ),
        timeout=10,
        what="a claim to move last_heartbeat",
    )
