"""A forced resubmission racing the report of the run it replaces, two real transactions.

Replacing a record cancels its live run, so the submission locks that record and its runs,
and it writes the campaign row (new param names, `finished_at`). The run's report locks the
same record and run, then the campaign. On PostgreSQL a submission that wrote the campaign
row before locking the record deadlocked with a report that held the record and was on its
way to the campaign: PostgreSQL aborted one of them with DeadlockDetected, a 500 (shown by
the first test before the fix). Every writer locks records, then runs, then the campaign.
The submission also decides on the state of a record it may replace only once it holds the
record's lock: one that was running when it looked, and done when it got the lock, is not
replaced without force_ignores_success (it was, before: the second test).

The report is paused between its record and its campaign by a third transaction holding the
record's child, which the report unblocks (as in `test_campaign_finish.py`); the submission
starts meanwhile. On SQLite writers are serialised (BEGIN IMMEDIATE): the two run one after
the other, in either order, and the outcome must be one of the two orders' outcomes.
"""

from __future__ import annotations

from sqlalchemy import select

from farmhand import wire
from farmhand.server.catalog.submission import submit as submission
from farmhand.server.db import Database
from farmhand.server.tables import CAMPAIGN, RESULT, RUN
from tests.server.queue.test_campaign_finish import behind_a_paused_report
from tests.server.queue.test_leases import at, record


def race(db: Database, **flags: bool) -> tuple[object, object, int]:
    """k0 running with a waiting child; its report (paused on the child, held by a third
    transaction) and a forced resubmission of k0 with a new command and a new param name,
    started in that order. Returns what each returned (or raised) and k0's run id."""

    def resubmit(campaign_id: int) -> object:
        spec = wire.RecordSpec(key="k0", command="true --again", params={"T": 600})
        body = wire.RecordsCreate(campaign_id=campaign_id, records=[spec], force=True, **flags)
        with db.write() as s:
            return submission.create(
                s, body=body, now=at(1), default_max_attempts=3, max_command_length=99
            )

    reported, submitted, lease = behind_a_paused_report(db, resubmit, max_attempts=3)
    return reported, submitted, lease.run_id


def campaign_of(db: Database) -> tuple[list[str], object]:
    """The params and `finished_at` of k0's campaign."""
    with db.read() as s:
        row = s.execute(
            select(CAMPAIGN.c.params, CAMPAIGN.c.finished_at).where(
                CAMPAIGN.c.id == record(db, "k0").campaign_id
            )
        ).one()
    return list(row.params), row.finished_at


def run_state(db: Database, run_id: int) -> str:
    """The state of run `run_id`."""
    with db.read() as s:
        return s.execute(select(RUN.c.state).where(RUN.c.id == run_id)).scalar_one()


def test_a_forced_replacement_racing_the_report_of_its_run_does_not_deadlock(
    db: Database,
) -> None:
    """With force_ignores_success k0 is replaced whichever commits first: after the report
    (PostgreSQL: the submission waits for it at k0), the done record; before it (SQLite may
    let the submission in first), the running one, cancelling the run the report then
    finds cancelled."""
    answers, created, run_id = race(db, force_ignores_success=True)
    for outcome in (answers, created):
        assert not isinstance(outcome, BaseException), f"{outcome!r}"  # DeadlockDetected
    assert isinstance(created, wire.RecordsCreated)
    assert (created.replaced, created.replaced_keys) == (1, ["k0"])
    assert isinstance(answers, list)
    (answer,) = answers
    k0 = record(db, "k0")
    assert (k0.state, k0.command, k0.attempts) == ("ready", "true --again", 0)
    assert k0.params == {"T": 600}
    assert campaign_of(db) == (["T"], None)  # the new name noted; new work: not finished
    if answer.ack is not None:  # the report first: its run done, its result gone with the spec
        assert run_state(db, run_id) == "done"
    else:  # the submission first: the report found its run cancelled
        assert db.dialect == "sqlite", "PostgreSQL: the submission waits for the report"
        assert run_state(db, run_id) == "cancelled"
    with db.read() as s:
        assert s.execute(select(RESULT.c.record_id).where(RESULT.c.record_id == k0.id)).all() == []


def test_a_record_done_while_a_forced_submission_waited_for_it_is_not_replaced(
    db: Database,
) -> None:
    """Without force_ignores_success a done record is skipped. The submission decides with
    the record locked (PostgreSQL: after the report it waited for), so a record that was
    running when the submission looked, and done when it got the lock, keeps its result."""
    answers, created, run_id = race(db)
    for outcome in (answers, created):
        assert not isinstance(outcome, BaseException), f"{outcome!r}"
    assert isinstance(created, wire.RecordsCreated) and isinstance(answers, list)
    (answer,) = answers
    k0 = record(db, "k0")
    assert campaign_of(db)[0] == ["T"]  # the name is noted either way (names are only added)
    if answer.ack is not None:  # the report first
        assert (created.replaced, created.skipped_keys) == (0, ["k0"])
        assert (k0.state, k0.command) == ("done", "true")
        assert run_state(db, run_id) == "done"
        with db.read() as s:
            kept = select(RESULT.c.record_id).where(RESULT.c.record_id == k0.id)
            assert s.execute(kept).all() != [], "the done record's result was dropped"
    else:  # the submission first (SQLite): it replaced the running record
        assert db.dialect == "sqlite", "PostgreSQL: the submission waits for the report"
        assert created.replaced == 1
        assert (k0.state, k0.command) == ("ready", "true --again")
