"""Walking a campaign's records in id order, a bounded id range per statement, and the
records a bulk filter matches (`wire.RecordFilter`), page by page.

`conditions` is the one place a filter becomes SQL: the bulk actions, their count, the
results table and the campaign page's record list all read records through it, so what a
page shows is what its actions and its CSV act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import params
from farmhand.server.tables import REC

__all__ = [
    "BULK_PAGE",
    "WALK_WINDOW",
    "bounds",
    "conditions",
    "count",
    "has_tag",
    "key_prefix",
    "matching",
    "scope_of",
    "walk_ids",
]

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


def key_prefix(dialect: str, prefix: str, column: Any = REC.c.key) -> list[Any]:
    """Conditions for `column` starting with `prefix` that an index on it can serve."""
    if dialect == "sqlite":
        # SQLite compares keys as bytes (BINARY), so a range is exact and reads the index.
        out = [column >= prefix]
        following = ord(prefix[-1]) + 1
        if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters SQLite can store
            following = 0xE000
        if following <= 0x10FFFF:
            out.append(column < prefix[:-1] + chr(following))
        return out
    # A range is wrong under a linguistic collation (it may skip punctuation); LIKE is right
    # under any, and reads ix_record_campaign_key_pattern (text_pattern_ops) for the prefix.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [column.like(escaped + "%", escape="\\")]


def has_tag(tag: str) -> Any:
    """The record's tags (a JSON list of names, which hold no quotes) include `tag`."""
    escaped = tag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(REC.c.tags, Text).like(f'%"{escaped}"%', escape="\\")


def conditions(
    dialect: str,
    *,
    state: wire.RecordState | None = None,
    dataset: str | None = None,
    prefix: str | None = None,
    tag: str | None = None,
    where: Sequence[wire.Condition] = (),
) -> list[Any]:
    """The SQL of a filter's parts but its campaign (whose condition depends on the plan a
    caller wants: `scope_of`) and its cursor."""
    out: list[Any] = []
    if state is not None:
        out.append(REC.c.state == state.value)
    if dataset is not None:
        out.append(REC.c.dataset == dataset)
    if prefix:
        out += key_prefix(dialect, prefix)
    if tag:
        out.append(has_tag(tag))
    out += [params.where_clause(dialect, condition) for condition in where]
    return out


def _filter_conditions(session: Session, chosen: wire.RecordFilter) -> list[Any]:
    """`chosen` as SQL (its params filters checked: 422), its cursor left out."""
    where = params.parse(chosen.where)
    params.check_names(session, where, chosen.campaign_id)
    out = conditions(
        session.get_bind().dialect.name,
        state=chosen.state,
        dataset=chosen.dataset,
        prefix=chosen.key_prefix,
        tag=chosen.tag,
        where=where,
    )
    out.append(REC.c.campaign_id == chosen.campaign_id)
    return out


def count(session: Session, chosen: wire.RecordFilter) -> wire.RecordCount:
    """How many records the filter matches (after its `after`), by state, and the highest
    matching id: one GROUP BY over the filter, whatever the number of records."""
    found = _filter_conditions(session, chosen)
    if chosen.after is not None:
        found.append(REC.c.id > chosen.after)
    rows = session.execute(
        select(REC.c.state, func.count(), func.max(REC.c.id)).where(*found).group_by(REC.c.state)
    ).all()
    states = {wire.RecordState(state): n for state, n, _ in rows}
    last = max((high for _, _, high in rows), default=None)
    return wire.RecordCount(total=sum(states.values()), states=states, last=last)


def matching(
    session: Session, chosen: wire.RecordFilter, *, through: int | None = None
) -> tuple[list[tuple[int, str, str]], int | None]:
    """The (id, key, state) of the next `BULK_PAGE` records the filter matches (up to id
    `through`: what a count saw), in id order, and the `next` to continue from (None: no
    more)."""
    limit = BULK_PAGE
    found = _filter_conditions(session, chosen)
    span = bounds(session, [REC.c.campaign_id == chosen.campaign_id])
    if span is not None and through is not None:  # what a count saw: nothing newer
        span = (span[0], min(span[1], through))
    ids, _ = walk_ids(session, found, span, after=chosen.after, limit=limit)
    rows = session.execute(
        select(REC.c.id, REC.c.key, REC.c.state).where(REC.c.id.in_(ids[:limit])).order_by(REC.c.id)
    ).all()
    more = len(ids) > limit
    return [tuple(row) for row in rows], ids[limit - 1] if more else None
