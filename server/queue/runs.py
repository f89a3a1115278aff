"""Run mutations — start, and the final reports (complete, fail, release, orphan) — each
fenced by the run's lease token and, for agent tokens, by the token its agent registered
with (`agent_token`: 403 otherwise).

A stale token gets `StaleLease` (409) and changes nothing. What each report's verb does is
one table, `endings.ENDINGS`. A final report is remembered with a digest of its payload, so the
same report sent twice gets the same answer, while a different one for an ended run is a
409.

Reports are applied as a set, one or many alike: one statement locks the records of all the
reported runs, one the runs (every writer's lock order: records, then runs, then the
campaigns whose `finished_at` it decides (`lifecycle`), each in id order), each report is
checked on its own against the rows read, and what changed is written back with one
statement per table. A report that fails its check changes nothing and does not stop the
others.

A failed attempt whose record is ready again waits before its next one: `not_before` is set
to now plus its run_args `retry_delay` (`matching.retry_wait`: growing with each attempt,
capped). A release or an orphan spends no attempt and sets no wait.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand import wire
from farmhand.server import auth, prepared
from farmhand.server.db import connection_of
from farmhand.server.errors import FarmhandError, Invalid, NotFound, StaleLease
from farmhand.server.ownership import not_your_run
from farmhand.server.queue import lifecycle, matching, states
from farmhand.server.queue.endings import ENDINGS, Report, report_of
from farmhand.server.queue.leases import derive_run_args
from farmhand.server.queue.reports import (
    END_RECORDS,
    END_RUNS,
    END_RUNS_POSTGRESQL,
    LOCK_RECORDS,
    LOCK_RUNS,
    RETRY_AT,
    START_RECORD,
    START_RUN,
    STORE_RESULTS,
    STORE_RESULTS_POSTGRESQL,
)
from farmhand.server.queue.states import LIVE_RUN, Event
from farmhand.server.storage import snapshots
from farmhand.server.tables import CAMPAIGN, REC

DONE, FAILED = wire.RecordState.done.value, wire.RecordState.failed.value
READY = wire.RecordState.ready.value


def _lock(conn: Connection, run_ids: list[int]) -> tuple[dict[int, dict], dict[int, dict]]:
    """The runs and their records, locked records first; {id: row} each."""
    params = {"b_runs": sorted(set(run_ids))}
    records, runs = (
        {row.id: row._asdict() for row in prepared.fetch(conn, stmt, params)}
        for stmt in (LOCK_RECORDS, LOCK_RUNS)
    )
    return runs, records


def _fence(
    runs: dict[int, dict],
    records: dict[int, dict],
    run_id: int,
    token: str,
    agent_token: int | None,
) -> tuple[dict, dict]:
    """The run and its record if `token` is its lease token and `agent_token` (None: an
    admin) registered its agent; 404, 403 or 409 otherwise."""
    run = runs.get(run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    refusal = not_your_run(run_id, run["agent_token"], agent_token)
    if refusal is not None:
        raise refusal
    if not auth.same_secret(run["token"], token):
        raise StaleLease(f"run {run_id}: the lease token does not match; this lease is not yours")
    return run, records[run["record_id"]]  # foreign key; runs are never deleted


def _ack(run: dict, record: dict) -> wire.RunAck:
    return wire.RunAck(
        run_id=run["id"],
        run_state=run["state"],
        record_id=record["id"],
        record_state=record["state"],
        attempts=record["attempts"],
    )


def _replay_or_refuse(run: dict, record: dict, digest: str) -> wire.RunAck:
    """An ended run: the same report again gets the stored answer; anything else is a 409."""
    if run["report"]:
        stored = json.loads(run["report"])
        if stored["digest"] == digest:
            return wire.RunAck.model_validate(stored["ack"])
    raise StaleLease(
        f"run {run['id']} of record '{record['key']}' already ended as {run['state']}; "
        f"its lease is gone and this report changes nothing"
    )


def _end(run: dict, record: dict, report: Report, now: datetime) -> wire.RunAck:
    """Check one report against its live run and apply it to the rows in memory."""
    ending = ENDINGS[report.verb]
    run["started_at"] = _started_at(run, report, now)
    attempts = record["attempts"] if ending.spends_attempt else record["attempts"] - 1
    final = attempts >= record["max_attempts"]
    event = ending.event if final else ending.retry_event
    record_state = states.transition(event, record["state"], what=f"record '{record['key']}'")
    error = _error(report, record, final)
    record.update(state=record_state.value, attempts=attempts, error=error)
    run["state"] = ending.run_state.value
    ack = _ack(run, record)
    run["report"] = f'{{"digest":{json.dumps(report.digest)},"ack":{ack.model_dump_json()}}}'
    return ack


def _started_at(run: dict, report: Report, now: datetime) -> datetime | None:
    """When the run's command started: as its start request said, else as its report says
    (a command that ended before the agent sent its start), kept between claim and now."""
    if run["started_at"] is not None or report.started_at is None:
        return run["started_at"]
    claimed = run["claimed_at"]
    if claimed.tzinfo is None:  # SQLite
        claimed = claimed.replace(tzinfo=timezone.utc)
    return min(max(report.started_at, claimed), now)


def _error(report: Report, record: dict, final: bool) -> str | None:
    """The record's error after the report: a release keeps the last one."""
    cause = report.payload.get("error") or report.payload.get("reason")
    if report.verb == "fail":
        return cause if final else f"attempt {record['attempts']} failed: {cause}"
    if report.verb == "orphan":
        return f"orphaned: {cause}"
    return record["error"] if report.verb == "release" else None


def _apply(
    tx: Session | Connection, reports: list[Report], now: datetime, agent_token: int | None
) -> list[wire.RunAck | FarmhandError]:
    """Apply final reports in one go: one answer (an ack or the error) per report, in order;
    with `agent_token`, only on runs of agents registered with it (403 for the others)."""
    conn = connection_of(tx)
    runs, records = _lock(conn, [r.run_id for r in reports])
    archives = [r.payload["archive"] for r in reports if r.payload.get("archive")]
    absent = set(snapshots.missing(conn, archives)) if archives else set()
    outcomes: list[wire.RunAck | FarmhandError] = []
    ended: list[tuple[Report, dict, dict]] = []
    for report in reports:
        try:
            run, record = _fence(runs, records, report.run_id, report.token, agent_token)
            if run["state"] in LIVE_RUN and report.payload.get("archive") in absent:
                raise Invalid(
                    f"run {run['id']}: archive snapshot {report.payload['archive']} is not on "
                    "the server; upload it first"
                )
            if run["state"] in LIVE_RUN:
                outcomes.append(_end(run, record, report, now))
                ended.append((report, run, record))
            else:  # ended before, or earlier in this very batch
                outcomes.append(_replay_or_refuse(run, record, report.digest))
        except FarmhandError as exc:
            outcomes.append(exc)
    if ended:
        _write(conn, ended, now)
    return outcomes


def _write(conn: Connection, ended: list[tuple[Report, dict, dict]], now: datetime) -> None:
    endings: dict[tuple, list[int]] = {}
    for report, _, record in ended:
        given_back = 0 if ENDINGS[report.verb].spends_attempt else 1
        endings.setdefault((record["state"], record["error"], given_back), []).append(record["id"])
    parents = []
    for (state, error, given_back), ids in endings.items():
        written = prepared.fetch(
            conn,
            END_RECORDS,
            {
                "b_ids": ids,
                "b_state": state,
                "b_error": error,
                "b_given_back": given_back,
                "b_now": now,
            },
        )
        parents.extend(rid for rid, has_children in written if has_children)
    runs = [
        {
            "b_id": run["id"],
            "b_state": run["state"],
            "b_started_at": run["started_at"],
            "b_exit_code": report.payload.get("exit_code"),
            "b_error": report.payload.get("error", report.payload.get("reason")),
            "b_stdout_tail": report.payload.get("stdout_tail"),
            "b_stderr_tail": report.payload.get("stderr_tail"),
            "b_report": run["report"],
            "b_archive": report.payload.get("archive"),
        }
        for report, run, _ in ended
    ]
    prepared.execute_rows(conn, END_RUNS, END_RUNS_POSTGRESQL, runs, b_now=now)
    retried = [record for report, _, record in ended if report.verb == "fail"]
    _retry_at(conn, [record for record in retried if record["state"] == READY], now)
    results = [
        {
            "b_record_id": record["id"],
            "b_run_id": run["id"],
            "b_document": json.dumps(report.result),
        }
        for report, run, record in ended
        if report.verb == "complete"
    ]
    prepared.execute_rows(conn, STORE_RESULTS, STORE_RESULTS_POSTGRESQL, results)
    done = [record["id"] for _, _, record in ended if record["state"] == DONE]
    failed = {record["id"]: record["key"] for _, _, record in ended if record["state"] == FAILED}
    records = [record for _, _, record in ended]
    lifecycle.records_ended(
        conn,
        done=done,
        failed=failed,
        now=now,
        campaign_ids={r["campaign_id"] for r in records if r["state"] in (DONE, FAILED)},
        temporary=[r["id"] for r in records if r["has_temporary"]],
        parents=parents,
    )


def _retry_at(conn: Connection, records: list[dict], now: datetime) -> None:
    """Records a failed attempt made ready again are not claimed before their retry delay
    (from their effective run_args: campaign defaults, record, a retry's temporary ones)."""
    if not records:
        return
    attempts = {record["id"]: record["attempts"] for record in records}
    found = conn.execute(
        select(REC.c.id, CAMPAIGN.c.defaults, REC.c.run_args, REC.c.temporary_run_args)
        .join(CAMPAIGN, CAMPAIGN.c.id == REC.c.campaign_id)
        .where(REC.c.id.in_(sorted(attempts)))
    )
    waits = {
        rid: matching.retry_wait(derive_run_args(*run_args), attempts[rid])
        for rid, *run_args in found
    }
    rows = [
        {"b_id": rid, "b_not_before": now + timedelta(seconds=wait)}
        for rid, wait in sorted(waits.items())
        if wait > 0
    ]
    if rows:
        conn.execute(RETRY_AT, rows)


def start(
    tx: Session | Connection,
    *,
    run_id: int,
    body: wire.RunStart,
    now: datetime,
    agent_token: int | None = None,
) -> wire.RunAck:
    """The agent started the command: claimed → running. Repeating it is harmless."""
    conn = connection_of(tx)
    runs, records = _lock(conn, [run_id])
    run, record = _fence(runs, records, run_id, body.token, agent_token)
    if run["state"] == wire.RunState.running.value:
        return _ack(run, record)
    if run["state"] not in LIVE_RUN:
        raise StaleLease(
            f"run {run_id} of record '{record['key']}' already ended as {run['state']}"
        )
    what = f"record '{record['key']}'"
    record["state"] = states.transition(Event.start, record["state"], what=what).value
    run["state"] = wire.RunState.running.value
    prepared.execute(
        conn, START_RECORD, {"b_id": record["id"], "b_state": record["state"], "b_now": now}
    )
    prepared.execute(conn, START_RUN, {"b_id": run_id, "b_now": now})
    return _ack(run, record)


def start_many(
    conn: Connection,
    *,
    starts: list[wire.RunStartItem],
    now: datetime,
    agent_token: int | None = None,
) -> list[wire.RunReportAnswer]:
    """Start many runs in the caller's transaction, each fenced and answered on its own: a
    refused one (a stale token, another agent's run) changes nothing and gets its error."""
    answers = []
    for item in starts:
        try:
            body = wire.RunStart(token=item.token)
            ack = start(conn, run_id=item.run_id, body=body, now=now, agent_token=agent_token)
        except FarmhandError as exc:
            error = wire.ErrorBody(detail=exc.message, code=exc.code)
            answers.append(wire.RunReportAnswer(run_id=item.run_id, error=error))
        else:
            answers.append(wire.RunReportAnswer(run_id=item.run_id, ack=ack))
    return answers


def report(
    tx: Session | Connection,
    *,
    item: wire.RunReport,
    now: datetime,
    agent_token: int | None = None,
) -> wire.RunAck:
    """Apply one final report (what the per-run endpoints take); raises its refusal."""
    (outcome,) = _apply(tx, [report_of(item)], now, agent_token)
    if isinstance(outcome, FarmhandError):
        raise outcome
    return outcome


def report_many(
    tx: Session | Connection,
    *,
    reports: list[wire.RunReport],
    now: datetime,
    agent_token: int | None = None,
) -> list[wire.RunReportAnswer]:
    """Apply many final reports in one transaction, each fenced on its own.

    A stale or unknown one gets its error and changes nothing, while the others are applied.
    A repeat of an applied item gets the same answer.
    """
    outcomes = _apply(tx, [report_of(item) for item in reports], now, agent_token)
    answers = []
    for item, outcome in zip(reports, outcomes, strict=True):
        if isinstance(outcome, FarmhandError):
            error = wire.ErrorBody(detail=outcome.message, code=outcome.code)
            answers.append(wire.RunReportAnswer(run_id=item.run_id, error=error))
        else:
            answers.append(wire.RunReportAnswer(run_id=item.run_id, ack=outcome))
    return answers
