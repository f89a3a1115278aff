"""/api/v1/runs: attempts, and the fenced reports agents send about them.

Every report is fenced by its run's lease token; an agent token also reports only on the
runs of the agents it registered (403 otherwise), an admin token on any.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from farmhand import wire
from farmhand.server.catalog import records
from farmhand.server.queue import endings, lifecycle, runs
from farmhand.server.queue.waking.wakeups import Wakeup
from farmhand.server.routes.deps import (
    AgentCall,
    AgentCallDep,
    DbDep,
    SubmitterDep,
    json_response,
)
from farmhand.server.routes.openapi import (
    RUN_COMPLETE,
    RUN_FAIL,
    RUN_ORPHAN,
    RUN_RELEASE,
    RUN_REPORTS,
    RUN_START,
    RUN_STARTS,
    errors,
)
from farmhand.server.serving import metrics

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=wire.Page[wire.Run], summary="List runs", responses=errors(422))
def list_runs(
    db: DbDep,
    _: SubmitterDep,
    record_id: wire.Id | None = None,
    agent_id: wire.Id | None = None,
    campaign_id: wire.Id | None = None,
    state: wire.RunState | None = None,
    after: wire.Id | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> wire.Page[wire.Run]:
    """Runs in id order, filtered; follow `next` for the following page."""
    with db.read() as session:
        return records.list_runs(
            session,
            after=after,
            limit=limit,
            record_id=record_id,
            agent_id=agent_id,
            campaign_id=campaign_id,
            state=state,
        )


@router.post(
    "/runs/reports",
    response_model=wire.RunReportAnswers,
    summary="Report many runs at once",
    responses=errors(413, 422),
    openapi_extra=RUN_REPORTS,
)
async def report_runs(body: wire.RunReports, call: AgentCallDep) -> Response:
    """Complete, fail, release or orphan many runs in one request and one transaction (each
    item's `verb` says which). Each report is fenced by its own token and answered on its
    own: a stale one gets its error, the rest apply."""
    db, wakeup = call.db, call.wakeup

    def write(conn: Connection) -> tuple[list[wire.RunReportAnswer], int, Response]:
        answers = runs.report_many(
            conn, reports=body.reports, now=call.now, agent_token=call.caller.agent_token
        )
        unblocked = lifecycle.made_ready(conn)
        return answers, unblocked, json_response(wire.RunReportAnswers(answers=answers))

    answers, unblocked, response = await db.run_write(write, items=len(body.reports))
    metrics.runs_ended(*(answer.ack for answer in answers))
    requeued = sum(1 for a in answers if a.ack and a.ack.record_state == wire.RecordState.ready)
    _wake(wakeup, unblocked, requeued)
    return response


@router.post(
    "/runs/starts",
    response_model=wire.RunReportAnswers,
    summary="Start many runs at once",
    responses=errors(413, 422),
    openapi_extra=RUN_STARTS,
)
async def start_runs(body: wire.RunStarts, call: AgentCallDep) -> Response:
    """The agent has started these runs' commands (it sends them in batches while the
    commands run). Each start is fenced by its own token and answered on its own: a stale
    one gets its error, the rest apply; repeating a start is harmless."""

    def write(conn: Connection) -> Response:
        answers = runs.start_many(
            conn, starts=body.starts, now=call.now, agent_token=call.caller.agent_token
        )
        return json_response(wire.RunReportAnswers(answers=answers))

    return await call.db.run_write(write, items=len(body.starts))


@router.post(
    "/runs/{run_id}/start",
    response_model=wire.RunAck,
    summary="Start a run",
    responses=errors(404, 409, 413, 422),
    openapi_extra=RUN_START,
)
async def start_run(run_id: wire.Id, body: wire.RunStart, call: AgentCallDep) -> Response:
    """The agent has staged the run and started its command (fenced by the lease token)."""
    agent_token = call.caller.agent_token

    def write(conn: Connection) -> Response:
        return json_response(
            runs.start(conn, run_id=run_id, body=body, now=call.now, agent_token=agent_token)
        )

    return await call.db.run_write(write)


async def _report_one(run_id: int, verb: str, body: BaseModel, call: AgentCall) -> Response:
    """The per-run report endpoints: one item of `POST /runs/reports`, refused as a whole."""
    item = endings.as_report(run_id, verb, body)
    wakeup = call.wakeup

    def write(conn: Connection) -> tuple[wire.RunAck, int, Response]:
        ack = runs.report(conn, item=item, now=call.now, agent_token=call.caller.agent_token)
        return ack, lifecycle.made_ready(conn), json_response(ack)

    ack, unblocked, response = await call.db.run_write(write)
    metrics.runs_ended(ack)
    _wake(wakeup, unblocked, 1 if ack.record_state == wire.RecordState.ready else 0)
    return response


def _wake(wakeup: Wakeup, unblocked: int, requeued: int) -> None:
    """Wake a waiting claim per record the reports made claimable: children whose parents
    are now all done, and records ready again (an attempt failed with attempts left, or a
    release)."""
    if unblocked + requeued:
        wakeup.notify(unblocked + requeued)


@router.post(
    "/runs/{run_id}/complete",
    response_model=wire.RunAck,
    summary="Report a successful run",
    responses=errors(404, 409, 413, 422),
    openapi_extra=RUN_COMPLETE,
)
async def complete_run(run_id: wire.Id, body: wire.RunComplete, call: AgentCallDep) -> Response:
    """The record becomes done with the run's result (children whose parents are now all done
    become ready); a repeat gets the same answer. The same as a `complete` item of
    `POST /runs/reports`."""
    return await _report_one(run_id, "complete", body, call)


@router.post(
    "/runs/{run_id}/fail",
    response_model=wire.RunAck,
    summary="Report a failed run",
    responses=errors(404, 409, 413, 422),
    openapi_extra=RUN_FAIL,
)
async def fail_run(run_id: wire.Id, body: wire.RunFail, call: AgentCallDep) -> Response:
    """The attempt failed; the record is re-queued while attempts remain, else failed. The
    same as a `fail` item of `POST /runs/reports`."""
    return await _report_one(run_id, "fail", body, call)


@router.post(
    "/runs/{run_id}/orphan",
    response_model=wire.RunAck,
    summary="Report a record it cannot run",
    responses=errors(404, 409, 413, 422),
    openapi_extra=RUN_ORPHAN,
)
async def orphan_run(run_id: wire.Id, body: wire.RunOrphan, call: AgentCallDep) -> Response:
    """The agent cannot run the record as specified (unknown runner, missing input, the run
    directory cannot be staged): it becomes orphaned with the reason, no attempt spent, until
    a user retries it (`farmhand retry --orphans`). The same as an `orphan` item of
    `POST /runs/reports`."""
    return await _report_one(run_id, "orphan", body, call)


@router.post(
    "/runs/{run_id}/release",
    response_model=wire.RunAck,
    summary="Give a record back",
    responses=errors(404, 409, 413, 422),
    openapi_extra=RUN_RELEASE,
)
async def release_run(run_id: wire.Id, body: wire.RunRelease, call: AgentCallDep) -> Response:
    """The record is ready again at once, without spending an attempt. The same as a
    `release` item of `POST /runs/reports`."""
    return await _report_one(run_id, "release", body, call)
