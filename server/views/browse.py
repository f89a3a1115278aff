"""A campaign's records a page at a time, for the campaign page: filtered by state, dataset,
tag, key prefix and params, in id order, with keyset cursors both ways (the filters' SQL:
`catalog.walk.conditions`, which the page's actions and its CSV use as well).

Every filter but the tag reads an index: state `ix_record_campaign_state`, dataset
`ix_record_campaign_dataset`, key prefix the unique (campaign_id, key) index on SQLite (a
byte range) and `ix_record_campaign_key_pattern` (text_pattern_ops, migration 0006) on
PostgreSQL. Tags live in a JSON list and params in a JSON object no index covers, so a tag
or params filter looks at a bounded
window: at most `TAG_WINDOW` records (after the other filters) past the cursor. When the
window ends before the page fills, the page says how far it searched and its cursor goes
on from there, so a rare tag costs a few clicks, never a scan of a million rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import params, walk
from farmhand.server.db import literal_in
from farmhand.server.tables import EDGE, REC

#: Records (matching the other filters) a tag filter looks at per page.
TAG_WINDOW = 20_000
#: Relatives the record page lists on each side (a record can have very many children).
RELATIVES = 200


@dataclass
class RecordRow:
    """One line of a campaign's record list."""

    id: int
    key: str
    state: str
    attempts: int
    max_attempts: int
    error: str | None
    updated_at: datetime
    dataset: str | None = None
    tags: list[str] | None = None
    params: dict[str, Any] | None = None


@dataclass
class RecordPage:
    """A keyset page of records: `before`/`after` cursors for the neighbouring pages;
    `searched` the records a tag filter looked at when its window ended first."""

    items: list[RecordRow]
    before: int | None = None
    after: int | None = None
    searched: int | None = None


@dataclass
class Filters:
    """What the campaign page narrows its records by (None: not at all)."""

    state: wire.RecordState | None = None
    key_prefix: str | None = None
    dataset: str | None = None
    tag: str | None = None
    where: list[str] = field(default_factory=list)  # filters on params, as typed

    def conditions(self) -> list[wire.Condition]:
        """The params filters, parsed (422 naming the first that is not one)."""
        return params.parse(self.where)

    def unindexed(self, dialect: str) -> list[Any]:
        """The conditions no index serves (tag, params): applied inside a bounded window."""
        return walk.conditions(dialect, tag=self.tag, where=self.conditions())

    def as_filter(self, campaign_id: int) -> wire.RecordFilter:
        """The same filter as the API's bulk actions take it."""
        return wire.RecordFilter(
            campaign_id=campaign_id,
            state=self.state,
            dataset=self.dataset,
            key_prefix=self.key_prefix,
            tag=self.tag,
            where=list(self.where),
        )


def record_page(
    session: Session,
    *,
    campaign_id: int,
    filters: Filters | None = None,
    after: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> RecordPage:
    """Records of a campaign in id order: the page after `after`, before `before`, or the
    first one."""
    filters = filters or Filters()
    params.check_names(session, filters.conditions(), campaign_id)
    dialect = session.get_bind().dialect.name
    backwards = before is not None and after is None
    start = after
    if after is None and before is None and _would_sort_campaign(session, filters):
        first = _first_id(session, campaign_id)
        if first is None:
            return RecordPage([])
        start = first - 1  # the first page, as a walk from the campaign's first record
    conditions = _conditions(session, campaign_id, filters, after=start, before=before)
    order = REC.c.id.desc() if backwards else REC.c.id
    window = None
    unindexed = filters.unindexed(dialect)
    if unindexed:
        # The window: the next TAG_WINDOW records the indexed filters let through.
        ids = select(REC.c.id).where(*conditions).order_by(order).limit(TAG_WINDOW).subquery()
        window = session.execute(select(func.count(), func.min(ids.c.id), func.max(ids.c.id))).one()
        if not window[0]:
            return RecordPage([], *_cursors([], after, before, backwards, more=False))
        # Within the window, walk the primary key: the id range is the narrowest condition.
        conditions = _conditions(session, campaign_id, filters, after=None, before=None, by_id=True)
        conditions += [REC.c.id.between(window[1], window[2]), *unindexed]
    columns = [getattr(REC.c, name) for name in RecordRow.__dataclass_fields__]
    stmt = select(*columns).where(*conditions).order_by(order).limit(limit + 1)
    rows = [RecordRow(*row) for row in session.execute(stmt).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    if window is None or more or window[0] < TAG_WINDOW:
        return RecordPage(rows, *_cursors(rows, after, before, backwards, more=more))
    # The window ended first: go on from its far end, and say how much was searched.
    edge = window[1] if backwards else window[2]
    page = RecordPage(rows, *_cursors(rows, after, before, backwards, more=True))
    if backwards:
        page.before = edge
    else:
        page.after = edge
    page.searched = window[0]
    return page


def _would_sort_campaign(session: Session, filters: Filters) -> bool:
    """SQLite's plan for a first page without a state or dataset filter: read the whole
    campaign from an index and sort it by id (150 ms at 900,000 records)."""
    indexed = filters.state is not None or filters.dataset is not None or filters.key_prefix
    return not indexed and session.get_bind().dialect.name == "sqlite"


def _first_id(session: Session, campaign_id: int) -> int | None:
    """The campaign's lowest record id, from one index seek per state: SQLite keeps the
    rowid last in `ix_record_campaign_state`, so each minimum is the first entry."""
    firsts = [
        session.execute(
            select(func.min(REC.c.id)).where(
                REC.c.campaign_id == campaign_id, literal_in(REC.c.state, [state.value])
            )
        ).scalar()
        for state in wire.RecordState
    ]
    found = [first for first in firsts if first is not None]
    return min(found) if found else None


def _conditions(
    session: Session,
    campaign_id: int,
    filters: Filters,
    *,
    after: int | None,
    before: int | None,
    by_id: bool = False,
) -> list[Any]:
    indexed = filters.state is not None or filters.key_prefix or filters.dataset is not None
    if by_id or (not indexed and (after is not None or before is not None)):
        # No index orders a campaign's records by id, so the planner would read the whole
        # campaign and sort it for every page. `campaign_id + 0` hides the column from the
        # indexes: the page walks the primary key from the cursor, reading about one page of
        # rows while the campaign's ids are contiguous (bulk submissions are).
        out = [REC.c.campaign_id + 0 == campaign_id]
    else:
        out = [REC.c.campaign_id == campaign_id]
    out += walk.conditions(
        session.get_bind().dialect.name,
        state=filters.state,
        dataset=filters.dataset,
        prefix=filters.key_prefix,
    )
    if before is not None and after is None:
        out.append(REC.c.id < before)
    elif after is not None:
        out.append(REC.c.id > after)
    return out


def _cursors(
    rows: list[RecordRow], after: int | None, before: int | None, backwards: bool, *, more: bool
) -> tuple[int | None, int | None]:
    """(before, after): a cursor exists when rows lie that way: `more` in the direction
    read, and the page we came from in the other."""
    if not rows:  # nothing this way: only the way back, from the cursor itself
        if backwards:
            return None, (before - 1 if before is not None else None)
        return (after + 1 if after is not None else None), None
    has_before = more if backwards else after is not None
    has_after = before is not None if backwards else more
    return (rows[0].id if has_before else None, rows[-1].id if has_after else None)


@dataclass
class Relatives:
    """A record's parents and children as (id, key), each list cut at `RELATIVES`."""

    parents: list[tuple[int, str]]
    children: list[tuple[int, str]]
    more_children: bool = False


def relatives(session: Session, record_id: int) -> Relatives:
    """Parents and children of a record, in id order, for links on the record page."""
    parents = session.execute(
        select(REC.c.id, REC.c.key)
        .join(EDGE, EDGE.c.parent_id == REC.c.id)
        .where(EDGE.c.record_id == record_id)
        .order_by(REC.c.id)
    ).all()
    children = session.execute(
        select(REC.c.id, REC.c.key)
        .join(EDGE, EDGE.c.record_id == REC.c.id)
        .where(EDGE.c.parent_id == record_id)
        .order_by(REC.c.id)
        .limit(RELATIVES + 1)
    ).all()
    return Relatives(
        parents=[tuple(row) for row in parents],
        children=[tuple(row) for row in children[:RELATIVES]],
        more_children=len(children) > RELATIVES,
    )
