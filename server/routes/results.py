"""/api/v1/campaigns/{id}/results, /ended and /failures: a campaign's results as a table,
what ended since a cursor (what `as_completed` and `wait` in the Python API poll), and its
failures grouped by cause."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from farmhand import wire
from farmhand.server.catalog import campaigns, ended, failures, params, records
from farmhand.server.catalog.results import FORMATS, Table
from farmhand.server.db import Database
from farmhand.server.errors import Invalid
from farmhand.server.routes.deps import DbDep, SubmitterDep
from farmhand.server.routes.openapi import errors
from farmhand.server.tables import Campaign

router = APIRouter(tags=["records"])

WHERE = Query(
    [],
    description="filters on params, all of which must hold: `T>=600`, `a=4.05`, `phase='fcc'`",
)


def results_table(
    db: Database,
    campaign_id: int,
    state: wire.RecordState | None,
    where: list[str],
    *,
    dataset: str | None = None,
    key_prefix: str | None = None,
    tag: str | None = None,
) -> tuple[Campaign, Table]:
    """The campaign (404 if unknown) and its results table, filters checked (422)."""
    conditions = params.parse(where)
    with db.read() as session:
        campaign = campaigns.check_exists(session, campaign_id)
    table = Table(
        db.read,
        campaign_id,
        campaign.params,
        state=state,
        where=conditions,
        dataset=dataset,
        key_prefix=key_prefix,
        tag=tag,
    )
    table.check()
    return campaign, table


def stream(campaign: Campaign, table: Table, form: str) -> StreamingResponse:
    """The table streamed as `form` (csv or jsonl), named for download."""
    name = f"{campaign.name}-{campaign.version}-results.{form}"
    return StreamingResponse(
        table.csv() if form == "csv" else table.jsonl(),
        media_type=FORMATS[form],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/campaigns/{campaign_id}/results",
    summary="A campaign's results as a table (CSV or JSON lines), streamed",
    responses={
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}},
        **errors(404, 422),
    },
)
def campaign_results(
    campaign_id: wire.Id,
    db: DbDep,
    _: SubmitterDep,
    format: str = Query("csv", pattern="^(csv|jsonl)$", description="csv or jsonl"),
    state: wire.RecordState | None = None,
    where: list[wire.Text] = WHERE,
) -> StreamingResponse:
    """One row per record in id order: `key`, `state`, each param, each field of the result
    document (nested fields joined with dots; a field named like a column is
    `result.<name>`), `attempts`, `runtime_s` (of its last run) and `error`. Streamed page
    by page: any number of records in bounded memory."""
    campaign, table = results_table(db, campaign_id, state, where)
    return stream(campaign, table, format)


@router.get(
    "/campaigns/{campaign_id}/ended",
    response_model=wire.Ended,
    summary="Records that ended since a cursor",
    responses=errors(404, 422),
)
def campaign_ended(
    campaign_id: wire.Id,
    db: DbDep,
    _: SubmitterDep,
    cursor: wire.Text | None = Query(None, description="`cursor` of the previous answer"),
    limit: int = Query(500, ge=1, le=records.MAX_PAGE),
) -> wire.Ended:
    """Records of the campaign that ended (done, failed, cancelled, orphaned) after
    `cursor`, each once per ending, in the order they were seen ended; a record retried and
    ended again comes again. Reads only what changed since the cursor."""
    position = ended.parse_cursor(cursor)
    with db.read() as session:
        campaigns.check_exists(session, campaign_id)
        # Looked at first: when nothing was going then, everything had ended and is stamped
        # and read below. (Looked at last, a record ending meanwhile would be missed.)
        finished = ended.finished(session, campaign_id)
        due = ended.unstamped(session, campaign_id)
    if due:
        with db.write() as session:
            ended.stamp(session, campaign_id)
    with db.read() as session:
        ids, (generation, last), more = ended.read(session, campaign_id, position, limit)
        return wire.Ended(
            items=records.by_ids(session, ids),
            cursor=f"{generation}:{last}",
            more=more,
            finished=None if more else finished,
        )


@router.get(
    "/campaigns/{campaign_id}/failures",
    response_model=wire.FailureGroups,
    summary="Failed records grouped by cause",
    responses=errors(404, 422),
)
def campaign_failures(
    campaign_id: wire.Id,
    db: DbDep,
    _: SubmitterDep,
    signature: Annotated[
        wire.Text | None, Query(max_length=1000, description="only this group (its signature)")
    ] = None,
    after: Annotated[
        wire.Id | None, Query(description="with `signature`: the records after this page's `next`")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="records named per group")] = 50,
) -> wire.FailureGroups:
    """The campaign's failed records grouped by a signature of their error and the last line
    of their stderr (numbers, paths and hex ids masked), biggest group first, each with its
    newest error and tail and the newest `limit` records of it (the newest 20,000 failed are
    read). With `signature`, only that group (none when no record has it), its records paged
    newest first: pass a page's `next` as `after` for the following one."""
    if after is not None and signature is None:
        raise Invalid("`after` pages one group's records: give its `signature` too")
    with db.read() as session:
        campaigns.check_exists(session, campaign_id)
        return failures.groups(
            session.connection(),
            campaign_id=campaign_id,
            cause=signature,
            after=after,
            named=limit,
        )
