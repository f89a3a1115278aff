"""/api/v1/campaigns/{id}/timeline and /runtimes: what the campaign page plots, as JSON.

Aggregates only (`views/charts.py`): at most `buckets` points and a few dozen bins, however
many records the campaign holds."""

from __future__ import annotations

from fastapi import APIRouter, Query

from farmhand import wire
from farmhand.server.catalog import campaigns
from farmhand.server.routes.deps import DbDep, SubmitterDep
from farmhand.server.routes.openapi import errors
from farmhand.server.tables import utcnow
from farmhand.server.views import charts

router = APIRouter(tags=["campaigns"])


@router.get(
    "/campaigns/{campaign_id}/timeline",
    response_model=wire.Timeline,
    summary="Records done and failed over time, bucketed",
    responses=errors(404, 422),
)
def campaign_timeline(
    campaign_id: wire.Id,
    db: DbDep,
    _: SubmitterDep,
    buckets: int = Query(charts.MAX_BUCKETS, ge=1, le=1000, description="at most this many points"),
) -> wire.Timeline:
    """The campaign's done and failed records over time, in equal buckets of a round width
    (1 s … 12 h, then whole days) chosen so that its span fits in `buckets`: from its first
    claim (or first ended record) to now while records remain, else to its last end. Each
    point has the running totals at the bucket's end (the last equals the campaign's done
    and failed counts), the records that ended in it and its throughput (records/s)."""
    with db.read() as session:
        row = campaigns.check_exists(session, campaign_id)  # no counts: they cost more
        conn = session.connection()
        return charts.timeline(
            conn,
            campaign_id=campaign_id,
            started_at=row.started_at,
            running=charts.remaining(conn, campaign_id),
            now=utcnow(),
            buckets=buckets,
        )


@router.get(
    "/campaigns/{campaign_id}/runtimes",
    response_model=wire.Runtimes,
    summary="The distribution of run times, and the slowest records",
    responses=errors(404, 422),
)
def campaign_runtimes(campaign_id: wire.Id, db: DbDep, _: SubmitterDep) -> wire.Runtimes:
    """How long the last run of each done or failed record took from its start to its end,
    as a histogram of equal bins from 0 (at most 24, of a round width), with the ten
    slowest records. Read from the newest 2,000 finished records (`scanned` of `finished`);
    a record whose last run never started (an upstream failure) has no time."""
    with db.read() as session:
        campaigns.check_exists(session, campaign_id)
        conn = session.connection()
        return charts.runtimes(
            conn, campaign_id=campaign_id, finished=charts.finished(conn, campaign_id)
        )
