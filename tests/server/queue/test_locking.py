"""Two real transactions: a report that races an expiry waits for it and then sees it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import text

from farmhand import wire
from farmhand.server.db import Database
from farmhand.server.errors import StaleLease
from farmhand.server.queue import leases, runs
from tests.server.queue.test_leases import T0, TTL, at, claim, record, setup


def blocked_on_a_lock(db: Database, waiter: threading.Thread) -> bool:
    """Whether `waiter`'s transaction is really blocked (not merely slow, nor still on its
    way): on PostgreSQL a backend waits for a lock; on SQLite `waiter` itself is queued on
    the write lock (the first writer merely holding it proves nothing)."""
    if not waiter.is_alive():
        return False
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar()
        return waiting > 0
    return db._write_lock is not None and waiter.ident in db._write_lock.waiting


def test_a_writer_counts_as_blocked_only_while_it_waits_for_the_lock(db: Database) -> None:
    """The check itself: a thread that has not reached its write transaction is not
    blocked, even while another transaction holds the lock; once queued behind it, it is."""
    from farmhand.server.catalog import campaigns

    with db.write() as s:  # a row both writers update
        campaigns.create(s, spec=wire.CampaignCreate(name="c"))
    holding, let_go, go_write = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with db.write() as s:
            s.execute(text("UPDATE campaign SET name = name"))
            holding.set()
            assert let_go.wait(30)

    def second() -> None:
        assert go_write.wait(30)
        with db.write() as s:
            s.execute(text("UPDATE campaign SET name = name"))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert holding.wait(30)
    threads[1].start()
    time.sleep(0.2)  # the second thread is alive, but not yet writing
    assert not blocked_on_a_lock(db, threads[1])
    go_write.set()
    deadline = time.monotonic() + 30
    while not blocked_on_a_lock(db, threads[1]):
        assert time.monotonic() < deadline, "the second writer never queued"
        time.sleep(0.01)
    let_go.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not blocked_on_a_lock(db, threads[1])


def test_a_late_report_waits_for_the_expiry_and_is_refused(db: Database) -> None:
    a1, _ = setup(db, 1)
    (lease,) = claim(db, a1, 1, 0)
    expired = threading.Event()
    release_expiry = threading.Event()
    outcome: list[object] = []

    def expiry() -> None:
        with db.write() as s:
            leases.expire(s, now=at(TTL + 1))
            expired.set()
            assert release_expiry.wait(30)

    def late_report() -> None:
        try:
            with db.write() as s:
                item = wire.RunReport(run_id=lease.run_id, token=lease.token)
                outcome.append(runs.report(s, item=item, now=T0 + timedelta(seconds=TTL + 2)))
        except StaleLease as exc:
            outcome.append(exc)

    first = threading.Thread(target=expiry)
    first.start()
    assert expired.wait(30)
    second = threading.Thread(target=late_report)
    second.start()
    deadline = time.monotonic() + 30
    while not blocked_on_a_lock(db, second):
        assert time.monotonic() < deadline, "the report never blocked behind the expiry"
        time.sleep(0.01)
    assert outcome == []  # still waiting while the expiry holds the record
    release_expiry.set()
    first.join(30)
    second.join(30)
    (answer,) = outcome
    assert isinstance(answer, StaleLease) and "already ended as lost" in str(answer)
    r = record(db, "k0")
    assert (r.state, r.attempts) == ("ready", 1)


def test_a_cancel_racing_a_report_ends_with_one_winner(db: Database) -> None:
    """Cancel (records, then runs) and a report (record, then run) finish in either order."""
    a1, _ = setup(db, 1)
    (lease,) = claim(db, a1, 1, 0)
    errors: list[BaseException] = []

    def cancel() -> None:
        from farmhand.server.catalog import records

        try:
            with db.write() as s:
                records.cancel(s, ids=[lease.record_id], now=at(1))
        except BaseException as exc:
            errors.append(exc)

    def report() -> None:
        try:
            with db.write() as s:
                item = wire.RunReport(run_id=lease.run_id, token=lease.token)
                runs.report(s, item=item, now=at(1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=cancel), threading.Thread(target=report)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    # Exactly one wins; the other gets a 409 (not a deadlock, not a lost update).
    assert len(errors) == 1 and getattr(errors[0], "status", None) == 409
    assert record(db, "k0").state in {"done", "cancelled"}


def test_a_batch_report_racing_the_same_batch_waits_and_gets_the_same_answers(
    db: Database,
) -> None:
    """Batch reports lock records, then runs, each in id order, whatever the order of the
    items: the second of two overlapping batches blocks, then replays the first's answers."""
    a1, _ = setup(db, 3)
    items = [wire.RunReport(run_id=x.run_id, token=x.token) for x in claim(db, a1, 3, 0)]
    holding, let_go = threading.Event(), threading.Event()
    answers: dict[str, list[wire.RunReportAnswer]] = {}

    def first() -> None:
        with db.write() as s:
            answers["first"] = runs.report_many(s, reports=items[::-1], now=at(1))
            holding.set()
            assert let_go.wait(30)

    def second() -> None:
        with db.write() as s:
            answers["second"] = runs.report_many(s, reports=items, now=at(2))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert holding.wait(30)
    threads[1].start()
    deadline = time.monotonic() + 30
    while not blocked_on_a_lock(db, threads[1]):
        assert time.monotonic() < deadline, "the second batch never blocked behind the first"
        time.sleep(0.01)
    assert "second" not in answers
    let_go.set()
    for t in threads:
        t.join(30)
    assert all(a.ack is not None for a in answers["first"])
    assert answers["second"] == answers["first"][::-1]  # replayed, not applied twice
    assert {record(db, f"k{i}").state for i in range(3)} == {"done"}


def test_a_submission_racing_the_same_keys_waits_and_skips_them(db: Database) -> None:
    """Two uncommitted submissions of the same keys: the second waits for the first, then
    skips every key instead of failing on the unique constraint."""
    from farmhand.server.catalog import campaigns
    from farmhand.server.catalog.submission import submit as submission

    with db.write() as s:
        c = campaigns.create(s, spec=wire.CampaignCreate(name="race")).id
    body = wire.RecordsCreate(
        campaign_id=c, records=[wire.RecordSpec(key=f"k{i}", command="true") for i in range(50)]
    )
    holding, let_go = threading.Event(), threading.Event()
    answers: dict[str, object] = {}

    def submit(name: str, hold: bool) -> None:
        try:
            with db.write() as s:
                answers[name] = submission.create(
                    s, body=body, now=at(0), default_max_attempts=3, max_command_length=100
                )
                if hold:
                    holding.set()
                    assert let_go.wait(30)
        except BaseException as exc:  # surfaced by the assertions below
            answers[name] = exc

    first = threading.Thread(target=submit, args=("first", True))
    second = threading.Thread(target=submit, args=("second", False))
    first.start()
    assert holding.wait(30)
    second.start()
    deadline = time.monotonic() + 30
    while not blocked_on_a_lock(db, second):
        assert time.monotonic() < deadline, "the second submission never waited for the first"
        time.sleep(0.01)
    let_go.set()
    first.join(30)
    second.join(30)
    assert answers["first"] == wire.RecordsCreated(created=50, skipped=0)
    assert answers["second"] == wire.RecordsCreated(
        created=0, skipped=50, skipped_keys=[f"k{i}" for i in range(50)]
    )


def test_a_child_submitted_while_its_parents_report_waits_is_unblocked_by_it(
    db: Database,
) -> None:
    """The report asks which records have children only once it holds them: a child whose
    submission held the parent (the edge's foreign key) while the report waited is seen,
    and made ready, by that report."""
    from farmhand.server.catalog.submission import submit as submission

    a1, _ = setup(db, 1)
    (lease,) = claim(db, a1, 1, 0)
    child = wire.RecordsCreate(
        campaign_id=record(db, "k0").campaign_id,
        records=[wire.RecordSpec(key="child", command="true", parents=["k0"])],
    )
    holding, let_go = threading.Event(), threading.Event()
    outcome: list[object] = []

    def submit() -> None:
        with db.write() as s:
            submission.create(
                s, body=child, now=at(1), default_max_attempts=3, max_command_length=100
            )
            holding.set()
            assert let_go.wait(30)

    def complete() -> None:
        with db.write() as s:
            item = wire.RunReport(run_id=lease.run_id, token=lease.token)
            outcome.append(runs.report(s, item=item, now=at(2)))

    first, second = threading.Thread(target=submit), threading.Thread(target=complete)
    first.start()
    assert holding.wait(30)
    second.start()
    deadline = time.monotonic() + 30
    while not blocked_on_a_lock(db, second):
        assert time.monotonic() < deadline, "the report never waited for the submission"
        time.sleep(0.01)
    let_go.set()
    first.join(30)
    second.join(30)
    (ack,) = outcome
    assert isinstance(ack, wire.RunAck) and ack.record_state == wire.RecordState.done
    assert record(db, "child").state == "ready"
