"""/api/v1/records: submit, list, inspect, cancel and retry calculations."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from farmhand import wire
from farmhand.server.catalog import campaigns, params, records, walk
from farmhand.server.catalog.submission import submit
from farmhand.server.routes.deps import (
    DbDep,
    NowDep,
    SettingsDep,
    SubmitterDep,
    WakeupDep,
    json_response,
)
from farmhand.server.routes.openapi import RECORD_FILTER, RECORD_IDS, RECORDS, RETRY, errors

router = APIRouter(tags=["records"])


@router.post(
    "/records",
    status_code=201,
    response_model=wire.RecordsCreated,
    summary="Submit records in bulk (skip, or force-replace, existing keys)",
    responses={200: {"model": wire.RecordsCreated, "description": "dry run: nothing kept"}}
    | errors(404, 413, 422),
    openapi_extra=RECORDS,
)
def create_records(
    body: wire.RecordsCreate,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    wakeup: WakeupDep,
    caller: SubmitterDep,
) -> Response:
    """Create records in one campaign (`campaign_id`), or in a new one (`campaign`) created in
    the same transaction. Keys the campaign already has are skipped, or with `force` replaced
    and queued again when their spec changed (`force_ignores_success`: done ones too). Records
    with `parents` wait until every parent is done; an unknown parent or a cycle is a 422.
    `dry_run`: the same checks, answered with 200, nothing kept."""
    try:
        with db.write() as session:
            answer = submit.create(
                session,
                body=body,
                now=now,
                default_max_attempts=settings.max_attempts,
                max_command_length=settings.max_command_length,
                created_by=caller.token_id,
            )
            if body.dry_run:
                raise _RolledBack(answer)
            response = json_response(answer, status_code=201)
    except _RolledBack as dry:
        return json_response(dry.answer, status_code=200)
    if answer.created or answer.replaced:
        # About one waiting claim per record (those with parents wait, so this wakes a few too
        # many at worst): not every idle agent for one record.
        wakeup.notify(answer.created + answer.replaced)
    return response


class _RolledBack(Exception):
    """Leaves a dry run's transaction, undoing everything it did."""

    def __init__(self, answer: wire.RecordsCreated):
        super().__init__("dry run")
        self.answer = answer


@router.get(
    "/records",
    response_model=wire.Page[wire.Record],
    summary="List records",
    responses=errors(422),
)
def list_records(
    db: DbDep,
    _: SubmitterDep,
    campaign_id: wire.Id | None = None,
    state: wire.RecordState | None = None,
    key: wire.Text | None = None,
    dataset: wire.Text | None = None,
    where: list[wire.Text] = Query(
        [],
        description="filters on params, all of which must hold: `T>=600`, `a=4.05`, "
        "`phase='fcc'`, `relaxed=true` (operators = != < <= > >=)",
    ),
    after: wire.Id | None = Query(None, description="id to continue after (keyset)"),
    limit: int = Query(100, ge=1, le=records.MAX_PAGE),
    count: bool = Query(False, description="also say how many match in all pages (`total`)"),
) -> wire.Page[wire.Record]:
    """Records in id order, filtered; follow `next` for the following page."""
    conditions = params.parse(where)
    with db.read() as session:
        return records.list_(
            session,
            after=after,
            limit=limit,
            campaign_id=campaign_id,
            state=state,
            key=key,
            dataset=dataset,
            where=conditions,
            count=count,
        )


@router.get(
    "/records/{record_id}",
    response_model=wire.Record,
    summary="Get a record with its runs and derived run_args",
    responses=errors(404, 422),
)
def get_record(record_id: wire.Id, db: DbDep, _: SubmitterDep) -> wire.Record:
    """One record: spec, state, result, effective run_args and every attempt."""
    with db.read() as session:
        return records.get(session, record_id)


@router.post(
    "/records/count",
    response_model=wire.RecordCount,
    summary="Count the records a filter matches",
    responses=errors(404, 422),
    openapi_extra=RECORD_FILTER,
)
def count_records(body: wire.RecordFilter, db: DbDep, _: SubmitterDep) -> wire.RecordCount:
    """How many records a bulk cancel or retry with this `filter` would look at (all of
    them, not one request's 10,000), by state, and the highest matching id. Changes nothing.
    """
    with db.read() as session:
        campaigns.check_exists(session, body.campaign_id)
        return walk.count(session, body)


@router.post(
    "/records/cancel",
    response_model=wire.RecordsChanged,
    summary="Cancel records",
    responses=errors(404, 409, 413, 422),
    openapi_extra=RECORD_IDS,
)
def cancel_records(body: wire.RecordIds, db: DbDep, now: NowDep, _: SubmitterDep) -> Response:
    """Cancel records; running ones are stopped by their agent at its next heartbeat.

    By ids, all or nothing: if any record cannot be cancelled, none is (409 naming it). By a
    `filter` (campaign, state, dataset, key prefix, tag, params), the matching records that
    have not ended are cancelled and the others skipped with the reason, at most 10,000 a
    request (`next` continues). Waiting descendants of a cancelled record fail with
    "upstream failed: <key>".
    """
    with db.write() as session:
        if body.filter is not None:
            return json_response(records.cancel_matching(session, chosen=body.filter, now=now))
        changed = records.cancel(session, ids=body.ids, now=now)
        return json_response(wire.RecordsChanged(changed=changed))


@router.post(
    "/records/retry",
    response_model=wire.RecordsChanged,
    summary="Retry records",
    responses=errors(404, 413, 422),
    openapi_extra=RETRY,
)
def retry_records(
    body: wire.RecordsRetry, db: DbDep, now: NowDep, wakeup: WakeupDep, _: SubmitterDep
) -> Response:
    """Re-queue failed, cancelled or orphaned records (or every orphan) with fresh attempts.

    Records in other states are skipped with the reason unless `force` (and, for done ones,
    `force_ignores_success`). `run_args` given here are temporary: they apply until the
    record ends again. Descendants that had failed upstream because of a retried record wait
    again. Unknown ids are a 404 and nothing changes.
    """
    with db.write() as session:
        answer = records.retry(session, body=body, now=now)
        response = json_response(answer)
    if answer.changed:
        wakeup.notify(len(answer.changed))
    return response
