"""A failed attempt's record waits out its `retry_delay` before the next claim, on both
databases, with an explicit clock: the claim, and the queue watch's `claimable`."""

from __future__ import annotations

import pytest

from farmhand import wire
from farmhand.server.catalog import records
from farmhand.server.db import Database
from farmhand.server.errors import Invalid
from farmhand.server.queue import matching, runs
from farmhand.server.queue.waking import outlook
from tests.server.queue.test_leases import TTL, at, claim, record, setup


def report(db: Database, lease: wire.Lease, verb: str, when: float) -> wire.RunAck:
    fields = {"error": "exit code 3", "exit_code": 3} if verb == "fail" else {"reason": "bye"}
    item = wire.RunReport(run_id=lease.run_id, token=lease.token, verb=verb, **fields)
    with db.write() as s:
        return runs.report(s, item=item, now=at(when))


def claimable(db: Database, when: float) -> bool:
    with db.read() as s:
        return outlook.claimable(s.connection(), now=at(when))


def test_a_failed_attempt_waits_its_retry_delay_doubling_per_attempt(db: Database) -> None:
    a1, _ = setup(db, 1, retry_delay="10s", max_attempts=4)
    waits = []
    clock = 0.0
    for attempt in (1, 2, 3):
        (lease,) = claim(db, a1, 1, clock)
        assert lease.attempt == attempt
        assert report(db, lease, "fail", clock).record_state == "ready"
        # Not before its delay is over: neither the claim nor the queue watch sees it.
        wait = 10 * 2 ** (attempt - 1)
        assert claim(db, a1, 1, clock + wait - 1) == [] and not claimable(db, clock + wait - 1)
        assert claimable(db, clock + wait)
        waits.append(record(db, "k0").not_before)
        clock += wait
    assert waits == [at(10), at(30), at(70)]
    (last,) = claim(db, a1, 1, clock)
    assert last.attempt == 4


def test_the_default_delay_is_a_few_seconds(db: Database) -> None:
    a1, _ = setup(db, 1)
    (lease,) = claim(db, a1, 1, 0)
    report(db, lease, "fail", 0)
    assert claim(db, a1, 1, 1) == []
    assert len(claim(db, a1, 1, 2)) == 1


def test_no_wait_with_zero_nor_after_the_last_attempt(db: Database) -> None:
    a1, _ = setup(db, 1, retry_delay=0, max_attempts=2)
    (lease,) = claim(db, a1, 1, 0)
    assert report(db, lease, "fail", 0).record_state == "ready"
    (again,) = claim(db, a1, 1, 0)
    assert report(db, again, "fail", 0).record_state == "failed"
    assert record(db, "k0").not_before is None


@pytest.mark.parametrize(
    ("run_args", "attempts", "wait"),
    [
        ({}, 1, 2.0),
        ({}, 2, 4.0),
        ({}, 8, 256.0),
        ({}, 9, 300.0),  # capped at five minutes
        ({}, 10_000, 300.0),
        ({"retry_delay": "1h"}, 1, 3600.0),  # a longer delay given is kept, not grown
        ({"retry_delay": "1h"}, 5, 3600.0),
        ({"retry_delay": "00:30"}, 2, 60.0),
        ({"retry_delay": 0}, 3, 0.0),
        ({"retry_delay": "soon"}, 1, 2.0),  # a retry's temporary run_args are not checked
    ],
)
def test_retry_wait_grows_per_attempt_and_is_capped(
    run_args: dict, attempts: int, wait: float
) -> None:
    assert matching.retry_wait(run_args, attempts) == wait


def test_releases_and_orphans_do_not_wait_and_a_retry_clears_the_wait(db: Database) -> None:
    a1, _ = setup(db, 2, retry_delay="1h")
    first, second = claim(db, a1, 2, 0)
    report(db, first, "release", 0)
    report(db, second, "orphan", 0)
    (again,) = claim(db, a1, 2, 0)  # the released one, at once; the orphan waits for a person
    assert again.record_id == first.record_id
    report(db, again, "fail", 0)
    with db.write() as s:
        records.cancel(s, ids=[again.record_id], now=at(1))
        records.retry(s, body=wire.RecordsRetry(ids=[again.record_id]), now=at(1))
    assert record(db, "k0").not_before is None
    (retried,) = claim(db, a1, 1, 1)
    assert retried.record_id == again.record_id


@pytest.mark.parametrize("bad", ["soon", -1, True, "-5s"])
def test_a_retry_delay_that_is_no_duration_is_refused_at_submission(
    db: Database, bad: object
) -> None:
    with pytest.raises(Invalid, match=r"run_args\.retry_delay must be a duration"):
        setup(db, 1, retry_delay=bad)


def due_next(db: Database, when: float) -> object:
    with db.read() as s:
        return outlook.due_next(s.connection(), now=at(when))


def test_the_queue_watch_knows_when_time_alone_next_makes_work(db: Database) -> None:
    """`due_next`: the soonest end of a retry delay or of a live lease. Until then a quiet
    queue stays quiet, and idle long polls skip their attempts (routes/leases.py)."""
    a1, _ = setup(db, 2, retry_delay="3s")
    assert due_next(db, 0) is None  # ready records wait for no delay, and no lease is out
    first, _ = claim(db, a1, 2, 0)  # both leased until TTL (10 s)
    assert due_next(db, 0) == at(TTL)
    report(db, first, "fail", 1)  # ready again from 4 s
    assert not claimable(db, 2) and due_next(db, 2) == at(4)
    assert claimable(db, 4)
    (again,) = claim(db, a1, 1, 4)  # the same record, leased until 14 s
    assert again.record_id == first.record_id
    assert not claimable(db, 5) and due_next(db, 5) == at(TTL)  # the second's lease first
    assert claimable(db, TTL + 1)
