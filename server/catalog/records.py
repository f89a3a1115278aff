"""Records: list with keyset pagination, get with runs, cancel and retry (submission is in
`submission/submit.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import inputs, params
from farmhand.server.catalog.walk import bounds, matching, scope_of, walk_ids
from farmhand.server.db import literal_in
from farmhand.server.errors import Invalid, NotFound
from farmhand.server.queue import graph as dependencies
from farmhand.server.queue import lifecycle, states
from farmhand.server.queue.leases import derive_run_args
from farmhand.server.queue.states import LIVE_RUN, Event
from farmhand.server.tables import REC, RESULT, RUN, Campaign, Checkpoint, Record, RecordResult, Run

S = wire.RecordState
MAX_PAGE = 1000
#: Ids a page filtered by params looks at past its cursor (`list_`).
WHERE_WINDOW = 20_000
#: Keys looked up per statement.
_KEY_CHUNK = 500


def list_(
    session: Session,
    *,
    after: int | None,
    limit: int,
    campaign_id: int | None = None,
    state: wire.RecordState | None = None,
    key: str | None = None,
    dataset: str | None = None,
    where: Sequence[wire.Condition] = (),
    count: bool = False,
) -> wire.Page[wire.Record]:
    """A page of records in id order; `next` is the `after` of the following page. `where`:
    conditions on params, all of which must hold (`params.py`); `count`: also how many
    match in all pages."""
    limit = max(1, min(limit, MAX_PAGE))
    conditions = scope_of(campaign_id)  # ix_record_campaign_id: the campaign in id order
    if state is not None:
        conditions.append(Record.state == state.value)
    if key is not None:
        conditions.append(Record.key == key)
    if dataset is not None:
        conditions.append(Record.dataset == dataset)
    params.check_names(session, where, campaign_id)
    dialect = session.get_bind().dialect.name
    conditions += [params.where_clause(dialect, condition) for condition in where]
    if state is None and key is None and dataset is None:
        # A campaign (or everything) in id order, perhaps filtered by params: walked in
        # bounded id ranges. No index holds params: a filtered page looks at most
        # WHERE_WINDOW ids past its cursor, so a rare match costs a few bounded pages.
        span = bounds(session, scope_of(campaign_id))
        budget = WHERE_WINDOW if where else None
        ids, reached = walk_ids(session, conditions, span, after=after, limit=limit, budget=budget)
    else:  # an indexed filter (state, key, dataset) narrows it first
        stmt = select(REC.c.id).where(*conditions).order_by(REC.c.id).limit(limit + 1)
        if after is not None:
            stmt = stmt.where(REC.c.id > after)
        ids, span, reached = list(session.execute(stmt).scalars()), None, 0
    more = len(ids) > limit
    items = by_ids(session, ids[:limit])
    next_after = items[-1].id if more else None
    if not more and span is not None and reached < span[1]:
        next_after = reached  # nothing more within the budget: go on from where it stopped
    total = None
    if count:
        counted = select(func.count()).select_from(REC).where(*conditions)
        total = session.execute(counted).scalar()
    return wire.Page[wire.Record](items=items, next=next_after, total=total)


def ids_by_key(session: Session, campaign_id: int, keys: list[str]) -> dict[str, int]:
    """`{key: id}` for those of `keys` the campaign has."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        found.update(
            session.execute(
                select(REC.c.key, REC.c.id).where(
                    REC.c.campaign_id == campaign_id, REC.c.key.in_(chunk)
                )
            ).all()
        )
    return found


def by_ids(session: Session, ids: list[int]) -> list[wire.Record]:
    """These records (as listed: no runs), in the order given. Read table by table by
    primary key: plans that stay right without statistics (a join could become a hash join
    over every result document)."""
    if not ids:
        return []
    found = {r.id: r for r in session.execute(select(Record).where(Record.id.in_(ids))).scalars()}
    documents = dict(
        session.execute(
            select(RESULT.c.record_id, RESULT.c.document).where(RESULT.c.record_id.in_(ids))
        ).all()
    )
    rows = [found[i] for i in ids if i in found]
    defaults = _defaults(session, {row.campaign_id for row in rows})
    parents = dependencies.parents_of(session, ids)
    staged = inputs.of_records(session, ids)
    return [_out(row, documents.get(row.id), defaults, parents, staged) for row in rows]


def get(session: Session, record_id: int) -> wire.Record:
    """One record with its result, derived run_args and every run, or 404."""
    record = session.get(Record, record_id)
    if record is None:
        raise NotFound(f"record {record_id} does not exist")
    result = session.get(RecordResult, record_id)
    out = _out(
        record,
        result.document if result else None,
        _defaults(session, {record.campaign_id}),
        dependencies.parents_of(session, [record_id]),
        inputs.of_records(session, [record_id]),
    )
    runs = session.execute(select(Run).where(Run.record_id == record_id).order_by(Run.id))
    out.runs = [wire.Run.model_validate(run) for run in runs.scalars()]
    newest: dict[int, str] = {}
    for run_id, sha in session.execute(
        select(Checkpoint.run_id, Checkpoint.sha256)
        .where(Checkpoint.record_id == record_id)
        .order_by(Checkpoint.id)
    ):
        newest[run_id] = sha
    for run in out.runs:
        run.checkpoint = newest.get(run.id)
    out.children = dependencies.children_of(session, record_id)
    return out


def _load(session: Session, ids: list[int]) -> list[Record]:
    # FOR UPDATE (PostgreSQL): a cancel must not race a claim or a report of the same record.
    stmt = select(Record).where(Record.id.in_(ids)).order_by(Record.id).with_for_update()
    rows = {
        r.id: r for r in session.execute(stmt.execution_options(populate_existing=True)).scalars()
    }
    missing = [i for i in ids if i not in rows]
    if missing:
        raise NotFound(f"records do not exist: {', '.join(map(str, missing[:20]))}")
    return [rows[i] for i in dict.fromkeys(ids)]


def cancel_matching(
    session: Session, *, chosen: wire.RecordFilter, now: datetime, through: int | None = None
) -> wire.RecordsChanged:
    """Cancel what the filter matches (up to id `through`) that has not ended; the rest is
    skipped with why."""
    rows, following = matching(session, chosen, through=through)
    open_states = {s.value for s in states.sources(Event.cancel)}
    ids = [rid for rid, _, state in rows if state in open_states]
    skipped = [
        wire.Skipped(id=rid, key=key, reason=f"is {state}: nothing to cancel")
        for rid, key, state in rows
        if state not in open_states
    ]
    changed = cancel(session, ids=ids, now=now) if ids else []
    return wire.RecordsChanged(changed=changed, skipped=skipped, next=following)


def cancel(session: Session, *, ids: list[int], now: datetime) -> list[int]:
    """Cancel records (all or nothing); a leased one's run is cancelled too (its agent hears
    at its next heartbeat); waiting descendants fail upstream."""
    records = _load(session, ids)
    leased = [r.id for r in records if r.state in states.LEASED]
    for record in records:
        record.state = states.transition(
            Event.cancel, record.state, what=f"record '{record.key}'"
        ).value
    stop_live_runs(session, record_ids=leased, now=now, reason="record cancelled by a user")
    for record in records:
        record.error = "cancelled by a user"
        record.agent_id = None
        record.lease_expires_at = None
        record.temporary_run_args = None
        record.updated_at = now
        session.add(record)
    session.flush()
    lifecycle.records_ended(session, done=[], failed={r.id: r.key for r in records}, now=now)
    return [r.id for r in records]


# Why a retry skips a record (the retry table: states x flags, see `retry_decision`).
RETRY_DONE = "is done; rerun it with --force --force-ignores-success"
RETRY_LIVE = "is {state}; re-queue it anyway with --force"


def retry_decision(state: S, *, force: bool, force_ignores_success: bool) -> str | None:
    """None when a retry re-queues a record in `state`, else why it is skipped."""
    if state in states.sources(Event.retry):
        return None
    if state == S.done:
        return None if force and force_ignores_success else RETRY_DONE
    return None if force else RETRY_LIVE.format(state=state.value)


def retry(
    session: Session, *, body: wire.RecordsRetry, now: datetime, through: int | None = None
) -> wire.RecordsChanged:
    """Re-queue records with fresh attempts (see `wire.RecordsRetry`; a filter's up to id
    `through`); descendants that had failed upstream because of them wait again."""
    if body.force_ignores_success and not body.force:
        raise Invalid("force_ignores_success needs force as well")
    ids, following = list(body.ids), None
    if body.filter is not None:
        if ids or body.orphans:
            raise Invalid("give ids, a filter or orphans, not several")
        rows, following = matching(session, body.filter, through=through)
        ids = [rid for rid, _, _ in rows]
    if body.orphans:
        orphans = select(REC.c.id).where(REC.c.state == S.orphaned.value).order_by(REC.c.id)
        if body.campaign_id is not None:
            orphans = orphans.where(REC.c.campaign_id == body.campaign_id)
        ids += [i for i in session.execute(orphans).scalars() if i not in set(ids)]
    if not ids:
        return wire.RecordsChanged(changed=[], next=following)
    records = _load(session, ids)
    changed, skipped = [], []
    for record in records:
        reason = retry_decision(
            S(record.state), force=body.force, force_ignores_success=body.force_ignores_success
        )
        if reason is not None:
            skipped.append(wire.Skipped(id=record.id, key=record.key, reason=reason))
        else:
            changed.append(record)
    stop_live_runs(
        session,
        record_ids=[r.id for r in changed if r.state in states.LEASED],
        now=now,
        reason="record re-queued by a forced retry",
    )
    for record in changed:
        record.state = S.ready.value
        record.end_seq = None  # it will end again (ended.py)
        record.attempts = 0
        record.error = None
        record.agent_id = None
        record.lease_expires_at = None
        record.not_before = None  # a retry by a person goes at once
        record.temporary_run_args = body.run_args
        record.updated_at = now
        session.add(record)
    session.flush()
    ids = [r.id for r in changed]
    if ids:
        session.execute(delete(RESULT).where(RESULT.c.record_id.in_(ids)))
    dependencies.settle(session, ids, now=now)
    reopened = dependencies.reopen(session, ids, {r.id: r.key for r in changed}, now=now)
    lifecycle.reopen_campaigns(session, [r.campaign_id for r in changed], now=now)
    return wire.RecordsChanged(changed=ids, skipped=skipped, reopened=reopened, next=following)


def stop_live_runs(session: Session, *, record_ids: list[int], now: datetime, reason: str) -> int:
    """Cancel the live runs of these records (their agents hear at the next heartbeat).

    Call it with the records already locked: records first, then runs.
    """
    if not record_ids:
        return 0
    return session.execute(
        update(RUN)
        .where(RUN.c.record_id.in_(record_ids), literal_in(RUN.c.state, LIVE_RUN))
        .values(state=wire.RunState.cancelled.value, ended_at=now, error=reason)
    ).rowcount


def _defaults(session: Session, campaign_ids: set[int]) -> dict[int, dict[str, Any]]:
    if not campaign_ids:
        return {}
    rows = session.execute(
        select(Campaign.id, Campaign.defaults).where(Campaign.id.in_(campaign_ids))
    )
    return dict(rows.all())


def _out(
    record: Record,
    document: Any,
    defaults: dict[int, dict[str, Any]],
    parents: dict[int, list[tuple[int, str]]],
    staged: dict[int, dict[str, str]],
) -> wire.Record:
    return wire.Record.model_validate(
        {
            **record.model_dump(),
            "result": document,
            "parents": [key for _, key in parents.get(record.id or 0, [])],
            "inputs": staged.get(record.id or 0, {}),
            "derived_run_args": derive_run_args(
                defaults.get(record.campaign_id), record.run_args, record.temporary_run_args
            ),
        }
    )


def list_runs(
    session: Session,
    *,
    after: int | None,
    limit: int,
    record_id: int | None = None,
    agent_id: int | None = None,
    campaign_id: int | None = None,
    state: wire.RunState | None = None,
) -> wire.Page[wire.Run]:
    """A page of runs in id order; `next` is the `after` of the following page."""
    stmt = select(Run).order_by(Run.id).limit(limit + 1)
    if campaign_id is not None:
        stmt = stmt.where(
            Run.record_id.in_(select(REC.c.id).where(REC.c.campaign_id == campaign_id))
        )
    for column, value in (
        (Run.record_id, record_id),
        (Run.agent_id, agent_id),
        (Run.state, state.value if state else None),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if after is not None:
        stmt = stmt.where(Run.id > after)
    rows = [wire.Run.model_validate(r) for r in session.execute(stmt).scalars()]
    more = len(rows) > limit
    rows = rows[:limit]
    return wire.Page[wire.Run](items=rows, next=rows[-1].id if more else None)
