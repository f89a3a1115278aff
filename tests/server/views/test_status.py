"""What the pages read: throughput and ETA, record pages both ways, failures, agent flags."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select, update

from farmhand import wire
from farmhand.server.db import Database
from farmhand.server.tables import Agent, Campaign, Record, Run
from farmhand.server.views import status

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def campaign_row(counts: dict[str, int], started: datetime | None = None) -> wire.Campaign:
    full = {s: counts.get(s.value, 0) for s in wire.RecordState}
    return wire.Campaign(id=1, name="c", version=1, created_at=T0, started_at=started, counts=full)


def test_throughput_is_the_change_in_worked_records_over_the_window() -> None:
    meter = status.Throughput(window=60, spacing=5, min_span=5)
    assert meter.rate(1, 10, now=0) == (0.0, 0.0)
    meter.observe({1: 10}, now=0)
    meter.observe({1: 12}, now=2)  # too soon after the last sample: not kept
    assert meter.rate(1, 14, now=4) == (0.0, 4)  # not enough time measured yet
    assert meter.rate(1, 30, now=10) == (2.0, 10)
    for t in range(10, 200, 10):
        meter.observe({1: 10 + t}, now=t)
    rate, span = meter.rate(1, 10 + 200, now=200)
    assert rate == 1.0 and 60 <= span <= 70  # only the last minute or so counts
    assert meter.rate(2, 5, now=200)[0] == 5 / span  # a campaign first seen now


def test_a_retry_does_not_make_the_rate_negative() -> None:
    meter = status.Throughput(window=60, spacing=1, min_span=1)
    meter.observe({1: 50}, now=0)
    assert meter.rate(1, 40, now=10) == (0.0, 10)


def test_progress_falls_back_to_the_rate_since_start_and_computes_the_eta() -> None:
    meter = status.Throughput()
    started = datetime.now(timezone.utc) - timedelta(seconds=100)
    row = campaign_row({"done": 150, "failed": 50, "running": 20, "ready": 180}, started)
    (p,) = status.progress([row], throughput=meter, now=started + timedelta(seconds=100))
    assert p.total == 400 and p.remaining == 200 and p.percent_finished == 50.0
    assert p.rate == 2.0 and p.rate_basis == "since start"
    assert p.eta == 100.0
    assert [(s.state, s.count) for s in p.segments] == [
        ("done", 150),
        ("failed", 50),
        ("running", 20),
        ("ready", 180),
    ]
    assert [s.start for s in p.segments] == [0.0, 37.5, 50.0, 55.0]
    (idle,) = status.progress([campaign_row({"ready": 5})], throughput=meter, now=T0)
    assert idle.rate is None and idle.eta is None and idle.percent_finished == 0.0
    just = campaign_row({"done": 3, "ready": 5}, started=T0)
    (young,) = status.progress([just], throughput=meter, now=T0 + timedelta(seconds=1))
    assert young.rate is None  # one second since start is too short to tell


def test_a_finished_campaign_shows_its_rate_over_its_run_and_an_empty_one_no_rate() -> None:
    meter = status.Throughput()
    row = campaign_row({"done": 90, "failed": 10}, started=T0).model_copy(
        update={"finished_at": T0 + timedelta(seconds=50)}
    )
    (done,) = status.progress([row], throughput=meter, now=T0 + timedelta(days=3))
    assert (done.rate, done.rate_basis, done.eta) == (2.0, "over its run", None)
    (empty,) = status.progress([campaign_row({})], throughput=meter, now=T0)
    assert (empty.total, empty.rate, empty.eta) == (0, None, None)


def _fill(db: Database, n: int) -> int:
    with db.write() as session:
        c = Campaign(name="c")
        session.add(c)
        session.flush()
        rows = [
            {
                "campaign_id": c.id,
                "key": f"k{i:03d}",
                "command": "x",
                "run_args": {},
                "state": "done" if i % 3 == 0 else "ready",
                "created_at": T0,
                "updated_at": T0,
            }
            for i in range(n)
        ]
        session.execute(insert(Record.__table__), rows)
        return c.id


def record_ids(db: Database, campaign_id: int) -> list[int]:
    """The campaign's record ids in key order (k000, k001, …)."""
    with db.read() as session:
        found = select(Record.id).where(Record.campaign_id == campaign_id).order_by(Record.key)
        return list(session.execute(found).scalars())


def test_recent_failures_are_the_newest_failed_attempts(db: Database) -> None:
    cid = _fill(db, 3)
    ids = record_ids(db, cid)
    with db.write() as session:
        for n in range(4):
            session.execute(
                insert(Run.__table__).values(
                    record_id=ids[n % 3],
                    token=f"t{n}",
                    attempt=1,
                    state="failed" if n != 2 else "done",
                    claimed_at=T0,
                    ended_at=T0,
                    stderr_tail=f"err {n}",
                )
            )
    with db.read() as session:
        failures = status.recent_failures(session, limit=2)
    assert [f.run.stderr_tail for f in failures] == ["err 3", "err 1"]
    assert failures[0].key == "k000" and failures[0].campaign_id == cid


def test_agents_show_their_leases_and_flags(db: Database) -> None:
    now = T0 + timedelta(hours=1)
    cid = _fill(db, 4)
    first_two = record_ids(db, cid)[:2]
    with db.write() as session:
        added = {
            name: Agent(name=name, host="h", state=state, last_heartbeat=now - age)
            for name, state, age in (
                ("ok", "active", timedelta(seconds=5)),
                ("old", "active", timedelta(seconds=600)),
                ("bye", "draining", timedelta(seconds=1)),
            )
        }
        session.add_all(added.values())
        session.add(Agent(name="gone", host="h", state="stopped", last_heartbeat=T0))
        session.flush()
        session.execute(
            update(Record)
            .where(Record.id.in_(first_two))
            .values(state="running", agent_id=added["ok"].id)
        )
    with db.read() as session:
        shown, stopped = status.agents(session, now=now, stale_after=60)
        totals = status.agent_totals(session, now=now, stale_after=60)
    assert stopped == 1
    assert [(a.agent.name, a.running, a.flags) for a in shown] == [
        ("bye", 0, ["draining"]),
        ("old", 0, ["stale"]),
        ("ok", 2, []),
    ]
    assert totals == {"live": 1, "draining": 1, "stale": 1}
