"""The export half of bundles: a campaign's records with their runs, one page at a time.

A page is read in one transaction, so each record comes with its own runs, result, inputs,
parents and checkpoints as they stood together; a campaign that changes while it is being
exported gives pages of different moments (each record whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import campaigns
from farmhand.server.errors import NotFound
from farmhand.server.tables import (
    CAMPAIGN,
    CHECKPOINT,
    EDGE,
    INPUT,
    REC,
    RESULT,
    RUN,
    Campaign,
    Record,
)

__all__ = ["MAX_PAGE", "bundle_campaign", "export_page", "parents_by_record"]

MAX_PAGE = 1000
_CHUNK = 500


def bundle_campaign(session: Session, campaign_id: int) -> wire.BundleCampaign:
    """The campaign as a bundle carries it, or 404."""
    campaign = campaigns.get(session, campaign_id)
    return wire.BundleCampaign.model_validate(
        # Archiving and who created it are this server's business, not the bundle's.
        campaign.model_dump(exclude={"id", "counts", "params", "archived_at", "created_by"})
    )


def export_page(
    session: Session, *, campaign_id: int, after: int | None, limit: int
) -> wire.BundlePage:
    """Up to `limit` records of the campaign after id `after`, each with everything a bundle
    keeps of it (see `wire.BundleRecord`)."""
    if session.get(Campaign, campaign_id) is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(Record).where(Record.campaign_id == campaign_id).order_by(Record.id)
    if after is not None:
        stmt = stmt.where(Record.id > after)
    rows = list(session.execute(stmt.limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [row.id for row in rows]
    results = _grouped(session, RESULT, RESULT.c.record_id, ids)
    inputs = _grouped(session, INPUT, INPUT.c.record_id, ids)
    runs = _grouped(session, RUN, RUN.c.record_id, ids)
    checkpoints = _grouped(session, CHECKPOINT, CHECKPOINT.c.run_id, ids)
    parents = parents_by_record(session, ids, campaign_id)
    records = []
    for row in rows:
        result = (results.get(row.id) or [None])[0]
        records.append(
            wire.BundleRecord(
                key=row.key,
                command=row.command,
                params=row.params,
                priority=row.priority,
                run_args=row.run_args,
                temporary_run_args=row.temporary_run_args,
                dataset=row.dataset,
                tags=row.tags,
                parents=[key for campaign, key in parents.get(row.id, []) if campaign is None],
                outside_parents=[
                    wire.BundleParent(campaign=campaign, key=key)
                    for campaign, key in parents.get(row.id, [])
                    if campaign is not None
                ],
                inputs={i.path: i.sha256 for i in inputs.get(row.id, [])},
                state=wire.RecordState(row.state),
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                error=row.error,
                result=result.document if result else None,
                result_run=result.run_id if result else None,
                created_at=row.created_at,
                runs=[_run(run, checkpoints) for run in runs.get(row.id, [])],
            )
        )
    return wire.BundlePage(
        campaign=bundle_campaign(session, campaign_id),
        records=records,
        next=ids[-1] if more else None,
    )


def _run(run: Any, checkpoints: dict[int, list[Any]]) -> wire.BundleRun:
    return wire.BundleRun(
        id=run.id,
        attempt=run.attempt,
        state=wire.RunState(run.state),
        claimed_at=run.claimed_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        exit_code=run.exit_code,
        error=run.error,
        stdout_tail=run.stdout_tail,
        stderr_tail=run.stderr_tail,
        run_args=run.run_args,
        archive=run.archive,
        checkpoints=[
            wire.BundleCheckpoint(sha256=c.sha256, created_at=c.created_at)
            for c in checkpoints.get(run.id, [])
        ],
    )


def _grouped(session: Session, table: Any, by: Any, ids: list[int]) -> dict[int, list[Any]]:
    """Rows of `table` belonging to these records, grouped by column `by`, in table order
    (its first primary key column: runs and checkpoints oldest first)."""
    out: dict[int, list[Any]] = {}
    order = list(table.primary_key.columns)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for row in session.execute(
            select(table).where(table.c.record_id.in_(chunk)).order_by(*order)
        ):
            out.setdefault(row._mapping[by], []).append(row)
    return out


def parents_by_record(
    session: Session, ids: Iterable[int], campaign_id: int
) -> dict[int, list[tuple[str | None, str]]]:
    """Each record's parents as (None, key) in its own campaign, else (`NAME:VERSION`, key)."""
    out: dict[int, list[tuple[str | None, str]]] = {}
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(
                EDGE.c.record_id, REC.c.key, REC.c.campaign_id, CAMPAIGN.c.name, CAMPAIGN.c.version
            )
            .join(REC, REC.c.id == EDGE.c.parent_id)
            .join(CAMPAIGN, CAMPAIGN.c.id == REC.c.campaign_id)
            .where(EDGE.c.record_id.in_(ids[start : start + _CHUNK]))
            .order_by(EDGE.c.record_id, REC.c.id)
        )
        for child, key, parent_campaign, name, version in rows:
            where = None if parent_campaign == campaign_id else f"{name}:{version}"
            out.setdefault(child, []).append((where, key))
    return out
