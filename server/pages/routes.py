"""The status pages: overview, campaign, record; and the cancel and retry buttons."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.engine import Connection

from farmhand import wire
from farmhand.server.allocations import jobs
from farmhand.server.catalog import campaigns, failures, records, results
from farmhand.server.errors import Conflict, FarmhandError
from farmhand.server.pages import charts, filters
from farmhand.server.pages.access import ActorDep, Refused, ViewerDep
from farmhand.server.pages.render import LIVE_HEADER, render
from farmhand.server.queue import states
from farmhand.server.queue.states import Event
from farmhand.server.routes.deps import DbDep, SettingsDep
from farmhand.server.routes.results import results_table, stream
from farmhand.server.storage import snapshots
from farmhand.server.tables import Agent, Campaign, utcnow
from farmhand.server.views import browse, status, stuck

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
#: Failed records a campaign page reads to group them by cause (the newest).
FAILURES_READ = 5_000
#: The overview's top causes: of this many campaigns, from this many failed records each.
CAUSES_CAMPAIGNS, CAUSES_READ = 10, 1_000
#: A campaign's params shown as columns of its record list (the first, by name).
PARAM_COLUMNS = 12
#: Characters of an action's report (`did=`) a page shows.
DID_LENGTH = 600


@router.get("/")
def overview(
    request: Request, who: ViewerDep, db: DbDep, settings: SettingsDep, archived: bool = False
) -> Response:
    """Every campaign's progress (archived ones with `?archived=1`), the agents, and the
    latest failures."""
    now = utcnow()
    with db.read() as session:
        rows = status.campaigns(session, archived=archived)
        hidden = 0 if archived else status.archived_count(session)
        agents, stopped = status.agents(session, now=now, stale_after=settings.lease_ttl)
        failures = status.recent_failures(session)
        causes = top_causes(session.connection(), rows)
        ready = sum(c.counts.get(wire.RecordState.ready, 0) for c in rows)
        recent: stuck.Recent = request.app.state.stuck
        not_moving = recent.explain(session, now=now, stale_after=settings.lease_ttl, ready=ready)
        allocations = jobs.list_(session, live=True)
        plotted = charts.overview_context(
            session, rows, agents, now=now, kept=request.app.state.plots
        )
    progress = status.progress(rows, throughput=request.app.state.throughput, now=now)
    context = {
        "progress": progress,
        "agents": agents,
        "stopped_agents": stopped,
        "failures": failures,
        "stuck": not_moving,
        "names": {c.id: f"{c.name} v{c.version}" for c in rows},
        "causes": causes,
        "causes_read": CAUSES_READ,
        "archived": hidden,
        "showing_archived": archived,
        "allocations": allocations.allocations,
        "autoscalers": [a for a in allocations.autoscalers if a.status],
        **plotted,
    }
    return render(request, "overview.html", context, viewer=who)


def top_causes(conn: Connection, rows: list[wire.Campaign]) -> list[wire.FailureGroups]:
    """The failure causes of the campaigns with the most failed records (at most
    `CAUSES_CAMPAIGNS` of them, each from its newest `CAUSES_READ` failed records)."""
    failing = [c for c in rows if c.counts.get(wire.RecordState.failed)]
    failing.sort(key=lambda c: -c.counts[wire.RecordState.failed])
    return [
        failures.groups(conn, campaign_id=c.id, scanned=CAUSES_READ)
        for c in failing[:CAUSES_CAMPAIGNS]
    ]


@router.get("/campaigns/{campaign_id}")
def campaign(
    request: Request,
    campaign_id: int,
    who: ViewerDep,
    db: DbDep,
    state: str = "",
    key: str = "",
    dataset: str = "",
    tag: str = "",
    where: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies it)
    columns: Annotated[list[str], Query()] = [],  # noqa: B006
    after: int | None = None,
    before: int | None = None,
    did: str = "",
) -> Response:
    """One campaign: its progress, its failures by cause, and its records, filtered and
    paged, with their params and the result fields asked for (`columns`) as columns."""
    chosen = filters.chosen(state=state, key=key, dataset=dataset, tag=tag, where=where)
    shown_fields = filters.columns(columns)
    live = bool(request.headers.get(LIVE_HEADER))
    with db.read() as session:
        with page_errors():
            row = campaigns.get(session, campaign_id)
            page = browse.record_page(
                session,
                campaign_id=campaign_id,
                filters=chosen,
                after=after,
                before=before,
                limit=PAGE_SIZE,
            )
        values = {}
        if shown_fields:
            values = results.documents(session, [r.id for r in page.items])
        # The fields to offer as columns go in the form, which a live refresh leaves alone.
        offered = [] if live else results.sample_fields(session, campaign_id)
        grouped = None
        if row.counts.get(wire.RecordState.failed):
            conn = session.connection()
            grouped = failures.groups(conn, campaign_id=campaign_id, scanned=FAILURES_READ)
        plotted = charts.campaign_context(session, row, now=utcnow(), kept=request.app.state.plots)
    (progress,) = status.progress([row], throughput=request.app.state.throughput, now=utcnow())
    shown = {"state": state, "dataset": dataset, "tag": tag, "key": key}
    query = filters.query(chosen)
    context = {
        "progress": progress,
        "page": page,
        "filters": shown,
        "where": chosen.where,
        "query": query,
        "view": query + [("columns", name) for name in shown_fields],
        "param_columns": row.params[:PARAM_COLUMNS],
        "result_columns": shown_fields,
        "values": values,
        "offered": sorted(set(offered) | set(shown_fields)),
        "states": list(wire.RecordState),
        "failures": grouped,
        "did": did[:DID_LENGTH],
        **plotted,
    }
    return render(request, "campaign.html", context, viewer=who)


@router.get("/campaigns/{campaign_id}/failures")
def failure_group(
    request: Request,
    campaign_id: int,
    who: ViewerDep,
    db: DbDep,
    signature: str = "",
    after: int | None = None,
) -> Response:
    """One failure cause of a campaign: every record that failed with it, linked and paged
    (newest first), with its "Retry these" button."""
    if len(signature) > 1000 or "\x00" in signature:
        raise Refused("signature: at most 1,000 characters, no NUL", 422)
    with db.read() as session:
        with page_errors():
            row = campaigns.get(session, campaign_id)
        found = failures.groups(
            session.connection(), campaign_id=campaign_id, cause=signature, after=after
        )
    group = found.groups[0] if found.groups else None
    context = {
        "campaign": row,
        "group": group,
        "after": after,
        "failed": found.failed,
        "scanned": found.scanned,
        "first_query": urlencode({"signature": signature}),
        "next_query": urlencode({"signature": signature, "after": group.next})
        if group and group.next
        else "",
    }
    return render(request, "failures.html", context, viewer=who)


@router.post("/campaigns/{campaign_id}/failures/retry")
def retry_failures(
    request: Request,
    campaign_id: int,
    who: ActorDep,
    db: DbDep,
    signature: Annotated[str, Form()] = "",
) -> Response:
    """A failure group's "Retry these" button: re-queue the campaign's failed records with
    that cause (as the page grouped them)."""
    with page_errors(), db.write() as session:
        campaigns.check_exists(session, campaign_id)
        ids = failures.members(session.connection(), campaign_id=campaign_id, cause=signature)
        if not ids:
            raise Conflict("no failed record has that cause any more (retried already?)")
        answer = records.retry(session, body=wire.RecordsRetry(ids=ids), now=utcnow())
    requeued = len(answer.changed)
    request.app.state.wakeup.notify(requeued)  # a waiting claim per record
    said = f"re-queued {requeued} record(s)"
    return RedirectResponse(f"/campaigns/{campaign_id}?{urlencode({'did': said})}", status_code=303)


@router.get("/records/{record_id}")
def record(request: Request, record_id: int, who: ViewerDep, db: DbDep, did: str = "") -> Response:
    """One record: its spec, effective run_args, result and every attempt with log tails."""
    with db.read() as session:
        with page_errors():
            item = records.get(session, record_id)
        owner = session.get(Campaign, item.campaign_id)  # not campaigns.get: no counts needed
        family = browse.relatives(session, record_id)
        agent_ids = {run.agent_id for run in item.runs or () if run.agent_id is not None}
        agents = {
            row.id: row
            for row in session.execute(select(Agent).where(Agent.id.in_(agent_ids))).scalars()
        }
    context = {
        "record": item,
        "campaign": owner,
        "agents": agents,
        "family": family,
        "did": did if did in ("cancelled", "retried") else "",
        "can_cancel": who.can_act and item.state in states.sources(Event.cancel),
        "can_retry": who.can_act and item.state in states.sources(Event.retry),
    }
    return render(request, "record.html", context, viewer=who)


@router.get("/campaigns/{campaign_id}/results.csv")
def results_csv(
    campaign_id: int,
    who: ViewerDep,
    db: DbDep,
    state: str = "",
    key: str = "",
    dataset: str = "",
    tag: str = "",
    where: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies it)
) -> Response:
    """The results table (the rows of `farmhand results`) of exactly the records the
    campaign page's filters show, as CSV, streamed."""
    chosen = filters.chosen(state=state, key=key, dataset=dataset, tag=tag, where=where)
    with page_errors():
        row, table = results_table(
            db,
            campaign_id,
            chosen.state,
            chosen.where,
            dataset=chosen.dataset,
            key_prefix=chosen.key_prefix,
            tag=chosen.tag,
        )
    return stream(row, table, "csv")


@router.get("/records/{record_id}/runs/{run_id}/{kind}")
def download(
    request: Request,
    record_id: int,
    run_id: int,
    kind: Literal["archive", "checkpoint"],
    who: ViewerDep,
    db: DbDep,
) -> Response:
    """A run's output archive or newest checkpoint, from the database (small ones) or
    streamed from the blob store."""
    with db.read() as session, page_errors():
        item = records.get(session, record_id)
    run = next((r for r in item.runs or () if r.id == run_id), None)
    sha256 = getattr(run, kind) if run is not None else None
    if run is None or sha256 is None:
        raise Refused(f"record {record_id} has no run {run_id} with a {kind}", 404)
    blobs = request.app.state.blobs
    with db.read() as session:
        kept = snapshots.bytes_of(session, sha256)  # a small one lives in the database
    size = len(kept) if kept is not None else blobs.size(sha256)
    if size is None:
        raise Refused(f"the {kind} of run {run_id} ({sha256}) is missing from the blob store", 404)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", item.key)[:100]
    name = f"{stem}-attempt-{run.attempt}" + (".tar.gz" if kind == "archive" else ".checkpoint")
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, max-age=3600",  # immutable bytes, but only for this viewer
        "X-Content-Type-Options": "nosniff",
    }
    media = "application/gzip" if kind == "archive" else "application/octet-stream"
    body = iter([kept]) if kept is not None else blobs.read(sha256)
    return StreamingResponse(body, media_type=media, headers=headers)


@router.post("/records/{record_id}/cancel")
def cancel(record_id: int, who: ActorDep, db: DbDep) -> Response:
    """The record's Cancel button."""
    with page_errors(), db.write() as session:
        records.cancel(session, ids=[record_id], now=utcnow())
    return RedirectResponse(f"/records/{record_id}?did=cancelled", status_code=303)


@router.post("/records/{record_id}/retry")
def retry(request: Request, record_id: int, who: ActorDep, db: DbDep) -> Response:
    """The record's Retry button."""
    with page_errors(), db.write() as session:
        answer = records.retry(session, body=wire.RecordsRetry(ids=[record_id]), now=utcnow())
        for skipped in answer.skipped:  # the button retries one record: say why it did not
            raise Conflict(f"record '{skipped.key}' was not retried: it {skipped.reason}")
    # An idle agent long-polling for work takes it at once.
    request.app.state.wakeup.notify(len(answer.changed))
    return RedirectResponse(f"/records/{record_id}?did=retried", status_code=303)


@contextmanager
def page_errors() -> Iterator[None]:
    """Show a domain error (404, 409 …) as the pages' error page instead of JSON."""
    try:
        yield
    except FarmhandError as exc:
        raise Refused(exc.message, exc.status) from exc
