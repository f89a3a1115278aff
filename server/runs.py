"""Run mutations — start, complete, fail, release — each fenced by the run's lease token.

A stale token gets `StaleLease` (409) and changes nothing. A final report (complete, fail,
release) is remembered with a digest of its payload, so the same report sent twice gets the
same answer, while a different report for an ended run is a 409.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from farmhand.agent import wire
from farmhand.server import lifecycle, states
from farmhand.server.errors import FarmhandError, NotFound, StaleLease
from farmhand.server.states import Event
from farmhand.server.tables import Record, RecordResult, Run

LIVE = {s.value for s in wire.LIVE_RUN_STATES}
ENDED = {wire.RecordState.done.value, wire.RecordState.failed.value}


def _fenced(session: Session, run_id: int, token: str) -> tuple[Run, Record]:
    record_id = session.execute(select(Run.record_id).where(Run.id == run_id)).scalar()
    if record_id is None:
        raise NotFound(f"run {run_id} does not exist")
    # Lock in the order every writer uses, record then run, and read the rows as committed
    # now: on PostgreSQL a report racing an expiry or a claim waits for it and then sees
    # its outcome, instead of overwriting it (SQLite serialises writers anyway).
    record = session.get(Record, record_id, with_for_update=True, populate_existing=True)
    run = session.get(Run, run_id, with_for_update=True, populate_existing=True)
    assert record is not None and run is not None  # foreign key; runs are never deleted
    if not hmac.compare_digest(run.token, token):
        raise StaleLease(f"run {run_id}: the lease token does not match; this lease is not yours")
    return run, record


def _ack(run: Run, record: Record) -> wire.RunAck:
    return wire.RunAck(
        run_id=run.id,
        run_state=run.state,
        record_id=record.id,
        record_state=record.state,
        attempts=record.attempts,
    )


def _digest(verb: str, body: wire.Strict) -> str:
    payload = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return verb + ":" + hashlib.sha256(payload.encode()).hexdigest()


def _replay_or_refuse(run: Run, record: Record, digest: str) -> wire.RunAck:
    """An ended run: the same report again gets the stored answer; anything else is a 409."""
    if run.report:
        stored = json.loads(run.report)
        if stored["digest"] == digest:
            return wire.RunAck.model_validate(stored["ack"])
    raise StaleLease(
        f"run {run.id} of record '{record.key}' already ended as {run.state}; "
        f"its lease is gone and this report changes nothing"
    )


def _end(
    session: Session,
    run: Run,
    record: Record,
    *,
    digest: str,
    now: datetime,
    run_state: wire.RunState,
    event: Event,
    **run_fields: Any,
) -> wire.RunAck:
    record.state = states.transition(event, record.state, what=f"record '{record.key}'").value
    record.agent_id = None
    record.lease_expires_at = None
    record.updated_at = now
    run.state = run_state.value
    run.ended_at = now
    for name, value in run_fields.items():
        setattr(run, name, value)
    ack = _ack(run, record)
    run.report = json.dumps({"digest": digest, "ack": ack.model_dump(mode="json")})
    session.add(run)
    session.add(record)
    session.flush()
    if record.state in ENDED:
        done = [record.id] if record.state == wire.RecordState.done.value else []
        failed = {} if done else {record.id: record.key}
        lifecycle.records_ended(session, done=done, failed=failed, now=now)
    return ack


def _final(verb: str, apply: Callable[..., wire.RunAck]) -> Callable[..., wire.RunAck]:
    """Wrap a final report: fence it, replay it if it was already applied, else apply it."""

    def handler(session: Session, *, run_id: int, body: Any, now: datetime) -> wire.RunAck:
        run, record = _fenced(session, run_id, body.token)
        digest = _digest(verb, body)
        if run.state not in LIVE:
            return _replay_or_refuse(run, record, digest)
        return apply(session, run, record, body, digest=digest, now=now)

    handler.__name__ = verb
    handler.__doc__ = apply.__doc__
    return handler


def start(session: Session, *, run_id: int, body: wire.RunStart, now: datetime) -> wire.RunAck:
    """The agent started the command: claimed → running. Repeating it is harmless."""
    run, record = _fenced(session, run_id, body.token)
    if run.state == wire.RunState.running.value:
        return _ack(run, record)
    if run.state not in LIVE:
        raise StaleLease(f"run {run_id} of record '{record.key}' already ended as {run.state}")
    record.state = states.transition(Event.start, record.state, what=f"record '{record.key}'").value
    record.updated_at = now
    run.state = wire.RunState.running.value
    run.started_at = now
    session.add(run)
    session.add(record)
    session.flush()
    return _ack(run, record)


def _complete(
    session: Session,
    run: Run,
    record: Record,
    body: wire.RunComplete,
    *,
    digest: str,
    now: datetime,
) -> wire.RunAck:
    """The attempt succeeded: the record is done and its result document is stored."""
    record.error = None
    result = session.get(RecordResult, record.id)
    if result is None:
        session.add(RecordResult(record_id=record.id, run_id=run.id, document=body.result))
    else:
        result.run_id, result.document = run.id, body.result
        session.add(result)
    return _end(
        session,
        run,
        record,
        digest=digest,
        now=now,
        run_state=wire.RunState.done,
        event=Event.complete,
        exit_code=body.exit_code,
        stdout_tail=body.stdout_tail,
        stderr_tail=body.stderr_tail,
        error=None,
    )


def _fail(
    session: Session, run: Run, record: Record, body: wire.RunFail, *, digest: str, now: datetime
) -> wire.RunAck:
    """The attempt failed: back to ready while attempts remain, else failed for good."""
    final = record.attempts >= record.max_attempts
    record.error = body.error if final else f"attempt {record.attempts} failed: {body.error}"
    return _end(
        session,
        run,
        record,
        digest=digest,
        now=now,
        run_state=wire.RunState.failed,
        event=Event.fail if final else Event.requeue,
        exit_code=body.exit_code,
        error=body.error,
        stdout_tail=body.stdout_tail,
        stderr_tail=body.stderr_tail,
    )


def _release(
    session: Session, run: Run, record: Record, body: wire.RunRelease, *, digest: str, now: datetime
) -> wire.RunAck:
    """The agent gave the record back: ready again, and the attempt is not spent."""
    record.attempts -= 1
    return _end(
        session,
        run,
        record,
        digest=digest,
        now=now,
        run_state=wire.RunState.released,
        event=Event.release,
        error=body.reason,
    )


def _orphan(
    session: Session, run: Run, record: Record, body: wire.RunOrphan, *, digest: str, now: datetime
) -> wire.RunAck:
    """The agent cannot run the record as specified: it is kept as orphaned with the reason
    until someone retries it, and the attempt is not spent."""
    record.attempts -= 1
    record.error = f"orphaned: {body.reason}"
    return _end(
        session,
        run,
        record,
        digest=digest,
        now=now,
        run_state=wire.RunState.orphaned,
        event=Event.orphan,
        error=body.reason,
    )


complete = _final("complete", _complete)
orphan = _final("orphan", _orphan)
fail = _final("fail", _fail)
release = _final("release", _release)


def report_many(
    session: Session, *, reports: list[wire.RunReport], now: datetime
) -> list[wire.RunReportAnswer]:
    """Apply many final reports in one transaction, each fenced on its own.

    Each item runs in a savepoint: a stale or unknown one gets its error and changes nothing,
    while the others are applied. A repeat of an applied item gets the same answer.
    """
    answers = []
    for item in reports:
        fields = item.model_dump(exclude={"run_id", "error", "result", "exit_code"})
        try:
            with session.begin_nested():
                if item.error is None:
                    body = wire.RunComplete(
                        exit_code=0 if item.exit_code is None else item.exit_code,
                        result=item.result,
                        **fields,
                    )
                    ack = complete(session, run_id=item.run_id, body=body, now=now)
                else:
                    body = wire.RunFail(error=item.error, exit_code=item.exit_code, **fields)
                    ack = fail(session, run_id=item.run_id, body=body, now=now)
            answers.append(wire.RunReportAnswer(run_id=item.run_id, ack=ack))
        except FarmhandError as exc:
            error = wire.ErrorBody(detail=exc.message, code=exc.code)
            answers.append(wire.RunReportAnswer(run_id=item.run_id, error=error))
    return answers


def list_(
    session: Session,
    *,
    after: int | None,
    limit: int,
    record_id: int | None = None,
    agent_id: int | None = None,
    state: wire.RunState | None = None,
) -> wire.Page[wire.Run]:
    """A page of runs in id order; `next` is the `after` of the following page."""
    stmt = select(Run).order_by(Run.id).limit(limit + 1)
    for column, value in (
        (Run.record_id, record_id),
        (Run.agent_id, agent_id),
        (Run.state, state.value if state else None),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if after is not None:
        stmt = stmt.where(Run.id > after)
    rows = [wire.Run.model_validate(r) for r in session.exec(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    return wire.Page[wire.Run](items=rows, next=rows[-1].id if more else None)
