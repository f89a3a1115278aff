"""Two real transactions end a campaign's last records at once: the campaign still finishes.

`finished_at` is set by the transaction that ends a campaign's last unfinished record. On
PostgreSQL (READ COMMITTED) two transactions ending the last two records lock different
record rows, so neither waits for the other; each statement sees only what was committed
when it began. Without more, each one's "any record unfinished?" still saw the other's
record unfinished, neither set `finished_at`, and the campaign stayed unfinished for good
(shown by these tests before the fix: `finished_at` stayed None on PostgreSQL). Every path
that ends records therefore locks the campaign row before that check
(`lifecycle.finish_campaigns`): the second transaction waits for the first to commit, then
sees its records ended. On SQLite writers are serialised (BEGIN IMMEDIATE), so the second
one waits for the whole first transaction: the same tests pin that it stays so.

Each race test holds the first transaction open just before its commit, runs the second
until it has committed or is blocked on a lock, then lets the first commit. The same lock
keeps a submission racing the last report from leaving a finished campaign with new work;
deleting a campaign takes it after the records, like the reports (else they deadlock). Two
tests without a race pin the campaigns a record's end can finish: another campaign's, through
a failure upstream, and its own after a retry that fails upstream at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import select, text
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import campaigns
from farmhand.server.catalog import records as catalog
from farmhand.server.catalog.submission import submit as submission
from farmhand.server.db import Database
from farmhand.server.queue import leases, runs
from farmhand.server.tables import CAMPAIGN, REC
from tests.server.queue.test_leases import TTL, at, claim, record, setup
from tests.server.queue.test_locking import blocked_on_a_lock

Work = Callable[[Session], object]


def interleave(db: Database, first: Work, second: Work) -> bool:
    """Run `first` in a write transaction held open before its commit, then `second` in
    another until it has committed or waits for a lock, then let `first` commit; whether
    `second` waited. Raises what either raised."""
    holding, let_go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run(work: Work, hold: bool) -> None:
        try:
            with db.write() as s:
                work(s)
                if hold:
                    holding.set()
                    assert let_go.wait(30)
        except BaseException as exc:  # raised below, in the test's thread
            errors.append(exc)
            holding.set()

    one = threading.Thread(target=run, args=(first, True))
    two = threading.Thread(target=run, args=(second, False))
    one.start()
    assert holding.wait(30)
    two.start()
    deadline = time.monotonic() + 30
    while two.is_alive() and not blocked_on_a_lock(db, two):
        assert time.monotonic() < deadline, "the second transaction neither ended nor waited"
        time.sleep(0.01)
    waited = two.is_alive()
    let_go.set()
    for thread in (one, two):
        thread.join(30)
    assert not one.is_alive() and not two.is_alive()
    if errors:
        raise errors[0]
    return waited


def finished_at(db: Database, key: str = "k0") -> object:
    """The `finished_at` of the campaign of record `key`."""
    campaign_id = record(db, key).campaign_id
    with db.read() as s:
        found = s.execute(select(CAMPAIGN.c.finished_at).where(CAMPAIGN.c.id == campaign_id))
        return found.scalar_one()


def report(lease: wire.Lease, kind: str = "complete", when: float = 1) -> Work:
    """A final report of `lease`'s run, as the run routes apply it."""
    extra = {"error": "boom"} if kind == "fail" else {}
    item = wire.RunReport(run_id=lease.run_id, token=lease.token, verb=kind, **extra)
    return lambda s: runs.report_many(s, reports=[item], now=at(when))


def test_two_reports_ending_the_last_two_records_finish_the_campaign(db: Database) -> None:
    a1, _ = setup(db, 2)
    first, second = claim(db, a1, 2, 0)
    waited = interleave(db, report(first), report(second))
    assert {record(db, f"k{i}").state for i in (0, 1)} == {"done"}
    assert finished_at(db) is not None, "both records ended, the campaign never finished"
    assert waited  # PostgreSQL: on the campaign row; SQLite: on the write lock


def test_a_cancel_and_a_report_ending_the_last_two_records_finish_the_campaign(
    db: Database,
) -> None:
    a1, _ = setup(db, 2)
    first, second = claim(db, a1, 2, 0)

    def cancel(s: Session) -> None:
        catalog.cancel(s, ids=[second.record_id], now=at(1))

    interleave(db, report(first), cancel)
    assert (record(db, "k0").state, record(db, "k1").state) == ("done", "cancelled")
    assert finished_at(db) is not None


def test_an_expiry_failing_the_last_record_and_a_report_finish_the_campaign(
    db: Database,
) -> None:
    """A lost lease with no attempts left fails its record (the sweeper's or a claim's
    expiry) while the other last record's report commits."""
    a1, _ = setup(db, 2, max_attempts=1)
    claim(db, a1, 1, 0)
    (second,) = claim(db, a1, 1, TTL / 2)  # k1's lease runs out later than k0's

    def expire(s: Session) -> None:
        assert leases.expire(s, now=at(TTL + 1)).failed == 1

    interleave(db, expire, report(second, when=TTL + 1))
    assert (record(db, "k0").state, record(db, "k1").state) == ("failed", "done")
    assert finished_at(db) is not None


def test_an_upstream_failure_ending_the_last_record_and_a_report_finish_the_campaign(
    db: Database,
) -> None:
    """A failed parent fails its waiting child, the campaign's last unfinished record but
    one; the other one's report commits meanwhile."""
    a1, _ = setup(db, 2, max_attempts=1)
    parent, other = claim(db, a1, 2, 0)
    with db.write() as s:
        child = wire.RecordSpec(key="child", command="true", parents=["k0"])
        body = wire.RecordsCreate(campaign_id=record(db, "k0").campaign_id, records=[child])
        submission.create(s, body=body, now=at(0), default_max_attempts=1, max_command_length=99)
    assert record(db, "child").state == "waiting"
    interleave(db, report(parent, "fail"), report(other))
    assert record(db, "child").state == "failed"
    assert finished_at(db) is not None


def test_a_submission_racing_the_last_report_leaves_the_campaign_unfinished(
    db: Database,
) -> None:
    """The other way round: a record submitted while the last report commits keeps the
    campaign unfinished (it waits for the report, then clears what the report set)."""
    a1, _ = setup(db, 1)
    (lease,) = claim(db, a1, 1, 0)
    campaign_id = record(db, "k0").campaign_id

    def submit(s: Session) -> None:
        body = wire.RecordsCreate(
            campaign_id=campaign_id, records=[wire.RecordSpec(key="late", command="true")]
        )
        submission.create(s, body=body, now=at(1), default_max_attempts=3, max_command_length=99)

    interleave(db, report(lease), submit)
    assert record(db, "late").state == "ready"
    assert finished_at(db) is None, "a campaign with a ready record counts as finished"


def test_a_failure_upstream_in_another_campaign_finishes_the_childs_campaign(
    db: Database,
) -> None:
    """A parent's failure can end the last record of another campaign (parents may be
    records of other campaigns, by id): that campaign finishes too."""
    a1, _ = setup(db, 1, max_attempts=1)
    (lease,) = claim(db, a1, 1, 0)
    with db.write() as s:
        other = campaigns.create(s, spec=wire.CampaignCreate(name="downstream")).id
        child = wire.RecordSpec(key="child", command="true", parents=[lease.record_id])
        body = wire.RecordsCreate(campaign_id=other, records=[child])
        submission.create(s, body=body, now=at(0), default_max_attempts=1, max_command_length=99)
    assert record(db, "child").state == "waiting"
    with db.write() as s:
        report(lease, "fail")(s)
    assert record(db, "child").state == "failed"
    assert finished_at(db, "k0") is not None
    assert finished_at(db, "child") is not None, "its last record failed upstream"


def test_a_retry_failed_again_upstream_at_once_leaves_the_campaign_finished(
    db: Database,
) -> None:
    """Retrying a record whose parent failed fails it again upstream in the same
    transaction: nothing is left to run, so the campaign stays finished."""
    a1, _ = setup(db, 1, max_attempts=1)
    (lease,) = claim(db, a1, 1, 0)
    with db.write() as s:
        child = wire.RecordSpec(key="child", command="true", parents=["k0"])
        body = wire.RecordsCreate(campaign_id=record(db, "k0").campaign_id, records=[child])
        submission.create(s, body=body, now=at(0), default_max_attempts=1, max_command_length=99)
    with db.write() as s:
        report(lease, "fail")(s)
    assert finished_at(db) is not None
    with db.write() as s:
        retried = catalog.retry(s, body=wire.RecordsRetry(ids=[record(db, "child").id]), now=at(2))
    assert retried.changed == [record(db, "child").id]
    assert record(db, "child").state == "failed"
    assert finished_at(db) is not None, "every record has ended"


def behind_a_paused_report(
    db: Database, second: Callable[[int], object], *, max_attempts: int = 1
) -> tuple[object, object, wire.Lease]:
    """k0 running, with a waiting child that a third transaction holds: k0's report starts
    (locks k0 and its run, then waits for the child) and then `second(campaign_id)`; the
    child is let go once both wait. What each returned (or raised), and k0's lease."""
    a1, _ = setup(db, 1)
    (lease,) = claim(db, a1, 1, 0)
    campaign_id = record(db, "k0").campaign_id
    with db.write() as s:
        child = wire.RecordSpec(key="child", command="true", parents=["k0"])
        body = wire.RecordsCreate(campaign_id=campaign_id, records=[child])
        submission.create(
            s, body=body, now=at(0), default_max_attempts=max_attempts, max_command_length=99
        )
    child_id = record(db, "child").id
    holding, let_go = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def hold_the_child() -> None:
        with db.write() as s:
            s.execute(select(REC.c.id).where(REC.c.id == child_id).with_for_update())
            holding.set()
            assert let_go.wait(30)

    def step(name: str, work: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[name] = work()
            except BaseException as exc:  # asserted by the callers
                outcomes[name] = exc

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def complete() -> object:
        with db.write() as s:
            return report(lease)(s)

    holder = threading.Thread(target=hold_the_child)
    holder.start()
    assert holding.wait(30)
    reporter = step("report", complete)  # k0 (and on PostgreSQL its run) locked; waits
    wait_until_blocked(db, reporter, waiters=1)
    other = step("second", lambda: second(campaign_id))
    wait_until_blocked(db, other, waiters=2)
    let_go.set()
    for thread in (holder, reporter, other):
        thread.join(30)
        assert not thread.is_alive()
    return outcomes["report"], outcomes["second"], lease


def test_a_campaign_deleted_while_its_last_report_commits_waits_without_deadlock(
    db: Database,
) -> None:
    """Deleting locks records before the campaign, as every writer does. A report paused
    between the two (its child is held by a third transaction) while the deletion starts:
    both complete, one after the other (campaign first, records second was a deadlock)."""
    from farmhand.server.catalog import removal

    def delete(campaign_id: int) -> object:
        with db.write_core() as conn:
            return removal.delete_campaign(conn, campaign_id=campaign_id, force=True, token_id=None)

    reported, deleted, _ = behind_a_paused_report(db, delete)
    assert isinstance(reported, list), reported
    assert isinstance(deleted, wire.CampaignDeleted), deleted
    assert deleted.records == 2


def wait_until_blocked(db: Database, thread: threading.Thread, *, waiters: int) -> None:
    """Until `thread` waits for a lock (PostgreSQL: until `waiters` backends do)."""
    deadline = time.monotonic() + 30
    while not (
        blocked_on_a_lock(db, thread)
        and (db.dialect != "postgresql" or lock_waiters(db) >= waiters)
    ):
        assert thread.is_alive() and time.monotonic() < deadline, "it never waited"
        time.sleep(0.01)


def lock_waiters(db: Database) -> int:
    """How many backends of the test database wait for a lock (PostgreSQL)."""
    with db.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar_one()
