"""Walking a campaign's records in id order, a bounded id range per statement, and the
records a bulk filter matches (`wire.RecordFilter`), page by page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import params
from farmhand.server.tables import REC

__all__ = ["BULK_PAGE", "WALK_WINDOW", "bounds", "matching", "scope_of", "walk_ids"]

#: Records one bulk cancel or retry by filter acts on; its answer's `next` continues.
BULK_PAGE = wire.MAX_RECORDS_PER_REQUEST


#: Ids one statement of `walk_ids` looks at.
WALK_WINDOW = 5_000


def scope_of(campaign_id: int | None) -> list[Any]:
    """The condition for one campaign's records (or none for every campaign)."""
    return [] if campaign_id is None else [REC.c.campaign_id == campaign_id]


def bounds(session: Session, scope: list[Any]) -> tuple[int, int] | None:
    """The lowest and highest record id in `scope` (None: no records)."""
    low, high = session.execute(select(func.min(REC.c.id), func.max(REC.c.id)).where(*scope)).one()
    return None if low is None else (low, high)


def walk_ids(
    session: Session,
    conditions: list[Any],
    span: tuple[int, int] | None,
    *,
    after: int | None,
    limit: int,
    budget: int | None = None,
) -> tuple[list[int], int]:
    """Up to `limit + 1` ids matching `conditions` after `after`, in id order, read
    WALK_WINDOW ids of `span` at a time; and the id the walk reached. Every statement reads a
    bounded id range, whatever plan the database picks (PostgreSQL without statistics would
    otherwise sort a whole campaign for each page); `budget` caps the ids looked at."""
    if span is None:
        return [], after or 0
    position = max(after if after is not None else span[0] - 1, span[0] - 1)
    stop = span[1] if budget is None else min(span[1], position + budget)
    ids: list[int] = []
    while position < stop and len(ids) <= limit:
        end = min(position + WALK_WINDOW, stop)
        ids += session.execute(
            select(REC.c.id)
            .where(*conditions, REC.c.id > position, REC.c.id <= end)
            .order_by(REC.c.id)
            .limit(limit + 1 - len(ids))
        ).scalars()
        position = end
    return ids, position


def matching(
    session: Session, chosen: wire.RecordFilter
) -> tuple[list[tuple[int, str, str]], int | None]:
    """The (id, key, state) of the next `BULK_PAGE` records the filter matches, in id order,
    and the `next` to continue from (None: no more)."""
    limit = BULK_PAGE
    where = params.parse(chosen.where)
    params.check_names(session, where, chosen.campaign_id)
    dialect = session.get_bind().dialect.name
    conditions = [params.where_clause(dialect, condition) for condition in where]
    conditions.append(REC.c.campaign_id == chosen.campaign_id)
    if chosen.state is not None:
        conditions.append(REC.c.state == chosen.state.value)
    if chosen.dataset is not None:
        conditions.append(REC.c.dataset == chosen.dataset)
    span = bounds(session, [REC.c.campaign_id == chosen.campaign_id])
    ids, _ = walk_ids(session, conditions, span, after=chosen.after, limit=limit)
    rows = session.execute(
        select(REC.c.id, REC.c.key, REC.c.state).where(REC.c.id.in_(ids[:limit])).order_by(REC.c.id)
    ).all()
    more = len(ids) > limit
    return [tuple(row) for row in rows], ids[limit - 1] if more else None
