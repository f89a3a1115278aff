"""Claims, expiry, renewal and release on a real SQLite file, with an explicit clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select

from farmhand import wire
from farmhand.server.catalog import campaigns
from farmhand.server.catalog.submission import submit
from farmhand.server.db import Database
from farmhand.server.errors import Conflict, NotFound
from farmhand.server.queue import agents, held_leases, leases
from farmhand.server.queue import claim as claims
from farmhand.server.tables import Record, Run

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TTL = 10.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def setup(db: Database, n: int = 3, **run_args: object) -> tuple[int, int]:
    """A campaign with `n` ready records and two registered agents."""
    with db.write() as s:
        c = campaigns.create(s, spec=wire.CampaignCreate(name="c"))
        specs = [
            wire.RecordSpec(key=f"k{i}", command="true", priority=0, run_args=run_args)
            for i in range(n)
        ]
        submit.create(
            s,
            body=wire.RecordsCreate(campaign_id=c.id, records=specs),
            now=T0,
            default_max_attempts=3,
            max_command_length=1000,
        )
        a1 = agents.register(
            s, body=wire.AgentRegister(name="a1", host="h", slots=4), token_id=1, now=T0
        )
        a2 = agents.register(
            s, body=wire.AgentRegister(name="a2", host="h", slots=4), token_id=1, now=T0
        )
    return a1.id, a2.id


def claim(db: Database, agent: int, n: int, when: float) -> list[wire.Lease]:
    with db.write() as s:
        return claims.claim(s, agent_id=agent, max_records=n, clock=lambda: at(when), ttl=TTL)


def record(db: Database, key: str) -> Record:
    with db.read() as s:
        return s.exec(select(Record).where(Record.key == key)).one()


def runs_of(db: Database, key: str) -> list[Run]:
    with db.read() as s:
        rid = s.exec(select(Record.id).where(Record.key == key)).one()
        return list(s.exec(select(Run).where(Run.record_id == rid).order_by(Run.id)))


def test_claim_hands_each_record_out_once_in_priority_order(db: Database) -> None:
    a1, a2 = setup(db, 3)
    with db.write() as s:
        c = campaigns.create(s, spec=wire.CampaignCreate(name="urgent"))
        submit.create(
            s,
            body=wire.RecordsCreate(
                campaign_id=c.id, records=[wire.RecordSpec(key="hot", command="true", priority=5)]
            ),
            now=T0,
            default_max_attempts=3,
            max_command_length=1000,
        )
    first = claim(db, a1, 2, 0)
    second = claim(db, a2, 5, 0)
    assert [lease.key for lease in first] == ["hot", "k0"]
    assert [lease.key for lease in second] == ["k1", "k2"]
    assert claim(db, a1, 5, 1) == []
    tokens = {lease.token for lease in first + second}
    assert len(tokens) == 4
    r = record(db, "k1")
    assert (r.state, r.attempts, r.agent_id) == ("claimed", 1, a2)
    assert r.lease_expires_at == at(TTL)
    # The record points at the run its lease belongs to (heartbeats renew through it).
    assert r.run_id == second[0].run_id
    assert [run.id for run in runs_of(db, "k1")] == [second[0].run_id]


def test_first_claim_starts_the_campaign_and_a_filter_keeps_to_its_campaign(
    db: Database,
) -> None:
    a1, _ = setup(db, 2)
    with db.write() as s:
        other = campaigns.create(s, spec=wire.CampaignCreate(name="other"))
        submit.create(
            s,
            body=wire.RecordsCreate(
                campaign_id=other.id,
                records=[wire.RecordSpec(key="urgent", command="true", priority=9)],
            ),
            now=T0,
            default_max_attempts=3,
            max_command_length=1000,
        )
    with db.write() as s:
        (first,) = claims.claim(
            s, agent_id=a1, max_records=5, clock=lambda: at(2), ttl=TTL, campaign_ids=[other.id]
        )
    assert first.key == "urgent"
    with db.write() as s:
        got = claims.claim(
            s, agent_id=a1, max_records=5, clock=lambda: at(3), ttl=TTL, campaign_ids=[other.id + 1]
        )
    assert got == []  # no such campaign: nothing, not the other campaign's records
    claim(db, a1, 1, 4)
    claim(db, a1, 1, 5)
    with db.read() as s:
        started = {c.name: c.started_at for c in campaigns.list_(s)}
    assert started == {"c": at(4), "other": at(2)}  # set by the first claim, kept after


def test_expired_lease_is_claimable_inside_the_claim(db: Database) -> None:
    a1, a2 = setup(db, 1)
    (lease,) = claim(db, a1, 1, 0)
    assert claim(db, a2, 1, TTL - 1) == []  # still live: nobody else gets it
    (again,) = claim(db, a2, 1, TTL + 1)  # no sweeper ran: the claim expired it itself
    assert again.record_id == lease.record_id and again.attempt == 2
    first, second = runs_of(db, "k0")
    assert first.state == "lost" and first.ended_at == at(TTL + 1)
    assert second.state == "leased" and second.agent_id == a2
    assert record(db, "k0").attempts == 2


def test_lost_leases_spend_attempts_until_failed(db: Database) -> None:
    a1, _ = setup(db, 1, max_attempts=2)
    assert len(claim(db, a1, 1, 0)) == 1
    assert len(claim(db, a1, 1, 20)) == 1  # attempt 2 after the first lease was lost
    assert claim(db, a1, 1, 40) == []  # attempt 2 lost too: no attempts left
    r = record(db, "k0")
    assert r.state == "failed" and r.attempts == 2
    assert "no attempts left" in r.error
    assert [run.state for run in runs_of(db, "k0")] == ["lost", "lost"]


def test_sweeper_pass_requeues_and_fails(db: Database) -> None:
    a1, _ = setup(db, 2)
    claim(db, a1, 2, 0)
    with db.write() as s:
        assert leases.expire(s, now=at(5)) == leases.Expired(0, 0)
        assert leases.expire(s, now=at(11)) == leases.Expired(requeued=2, failed=0)
    assert record(db, "k0").state == "ready"
    assert record(db, "k0").agent_id is None


def test_heartbeat_renews_only_the_runs_it_names(db: Database) -> None:
    a1, a2 = setup(db, 2)
    kept, forgotten = claim(db, a1, 2, 0)
    with db.write() as s:
        ack = agents.heartbeat(s, agent_id=a1, run_ids=[kept.run_id, 999], now=at(8), ttl=TTL)
    assert ack.renewed == 1 and ack.lost == [999] and ack.cancel == []
    got = claim(db, a2, 2, 12)
    assert [lease.key for lease in got] == [forgotten.key]
    assert record(db, kept.key).lease_expires_at == at(18)


def test_release_gives_the_record_back_without_spending_an_attempt(db: Database) -> None:
    a1, a2 = setup(db, 2)
    claim(db, a1, 2, 0)
    with db.write() as s:
        agents.stop(s, agent_id=a1, now=at(1))
    assert {record(db, k).state for k in ("k0", "k1")} == {"ready"}
    assert record(db, "k0").attempts == 0
    assert runs_of(db, "k0")[0].state == "released"
    with pytest.raises(Conflict, match="has stopped"):
        claim(db, a1, 1, 2)
    assert len(claim(db, a2, 5, 2)) == 2


def test_unknown_agent_cannot_claim(db: Database) -> None:
    setup(db, 1)
    with pytest.raises(NotFound, match="agent 77"):
        claim(db, 77, 1, 0)
    assert record(db, "k0").state == "ready"


def test_grace_after_restart_extends_live_leases(db: Database) -> None:
    a1, a2 = setup(db, 1)
    claim(db, a1, 1, 0)
    with db.write() as s:
        assert held_leases.grant_grace(s, now=at(9), grace=30) == 1
    assert claim(db, a2, 1, 20) == []
    assert record(db, "k0").lease_expires_at == at(39)
