"""Records: bulk create, list with keyset pagination, get with runs, cancel and retry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, Text, bindparam, cast, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from farmhand.agent import wire
from farmhand.server import states
from farmhand.server.db import execute_rows, literal_in, unnest
from farmhand.server.errors import Invalid, NotFound
from farmhand.server.leases import derive_run_args
from farmhand.server.states import Event
from farmhand.server.tables import Campaign, Record, RecordResult, Run, UTCDateTime

REC = Record.__table__
RUN = Run.__table__
MAX_PAGE = 1000


def _max_attempts(run_args: dict[str, Any], default: int, where: str) -> int:
    value = run_args.get("max_attempts", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Invalid(f"{where}: run_args.max_attempts must be a whole number >= 1, got {value!r}")
    return value


_SPEC_COLUMNS = ("key", "command", "priority", "run_args", "max_attempts")
_NEW_RECORD = {
    "campaign_id": bindparam("b_campaign", type_=Integer),
    "state": literal(wire.RecordState.ready.value),
    "attempts": literal(0),
    "created_at": bindparam("b_now", type_=UTCDateTime),
    "updated_at": bindparam("b_now", type_=UTCDateTime),
}
# Both statements skip keys the campaign already has and return the keys they inserted: no
# lookup first, and no race with a concurrent submission of the same keys. run_args arrive
# as JSON text.
_INSERT = (
    sqlite.insert(REC)
    .values(
        **{name: bindparam(f"b_{name}") for name in _SPEC_COLUMNS},
        **_NEW_RECORD,
    )
    .values(run_args=bindparam("b_run_args", type_=Text))  # already JSON text
    .on_conflict_do_nothing(index_elements=[REC.c.campaign_id, REC.c.key])
    .returning(REC.c.key)
)
_SPECS = unnest(key=Text, command=Text, priority=Integer, run_args=Text, max_attempts=Integer)
_INSERT_POSTGRESQL = (
    postgresql.insert(REC)
    .from_select(
        [*_SPEC_COLUMNS, *_NEW_RECORD],
        select(
            _SPECS.c.key,
            _SPECS.c.command,
            _SPECS.c.priority,
            cast(_SPECS.c.run_args, JSON),
            _SPECS.c.max_attempts,
            *_NEW_RECORD.values(),
        ),
    )
    .on_conflict_do_nothing(index_elements=[REC.c.campaign_id, REC.c.key])
    .returning(REC.c.key)
)


def create(
    session: Session,
    *,
    body: wire.RecordsCreate,
    now: datetime,
    default_max_attempts: int,
    max_command_length: int,
) -> wire.RecordsCreated:
    """Insert the records whose keys are new to the campaign; skip the rest."""
    campaign = session.get(Campaign, body.campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {body.campaign_id} does not exist")
    seen: set[str] = set()
    for spec in body.records:
        if spec.key in seen:
            raise Invalid(f"key '{spec.key}' appears twice in this request")
        seen.add(spec.key)
        if len(spec.command) > max_command_length:
            raise Invalid(
                f"record '{spec.key}': command is {len(spec.command)} characters; "
                f"the limit is {max_command_length}"
            )
    campaign_default = _max_attempts(
        campaign.defaults, default_max_attempts, f"campaign '{campaign.name}'"
    )
    rows = [
        {
            "b_key": spec.key,
            "b_command": spec.command,
            "b_priority": spec.priority,
            # Most records carry no run_args of their own: skip the encoder for them.
            "b_run_args": json.dumps(spec.run_args) if spec.run_args else "{}",
            "b_max_attempts": _max_attempts(
                spec.run_args, campaign_default, f"record '{spec.key}'"
            ),
        }
        for spec in body.records
    ]
    inserted = execute_rows(
        session.connection(), _INSERT, _INSERT_POSTGRESQL, rows, b_campaign=campaign.id, b_now=now
    )
    created = set(inserted.scalars())
    skipped = [spec.key for spec in body.records if spec.key not in created]
    return wire.RecordsCreated(
        created=len(created), skipped=len(skipped), skipped_keys=skipped[:100]
    )


def list_(
    session: Session,
    *,
    after: int | None,
    limit: int,
    campaign_id: int | None = None,
    state: wire.RecordState | None = None,
    key: str | None = None,
) -> wire.Page[wire.Record]:
    """A page of records in id order; `next` is the `after` of the following page."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = (
        select(Record, RecordResult.document)
        .outerjoin(RecordResult, RecordResult.record_id == Record.id)
        .order_by(Record.id)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(Record.id > after)
    if campaign_id is not None:
        stmt = stmt.where(Record.campaign_id == campaign_id)
    if state is not None:
        stmt = stmt.where(Record.state == state.value)
    if key is not None:
        stmt = stmt.where(Record.key == key)
    rows = session.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    defaults = _defaults(session, {row.Record.campaign_id for row in rows})
    items = [_out(row.Record, row.document, defaults) for row in rows]
    return wire.Page[wire.Record](items=items, next=items[-1].id if more else None)


def get(session: Session, record_id: int) -> wire.Record:
    """One record with its result, derived run_args and every run, or 404."""
    record = session.get(Record, record_id)
    if record is None:
        raise NotFound(f"record {record_id} does not exist")
    result = session.get(RecordResult, record_id)
    out = _out(
        record, result.document if result else None, _defaults(session, {record.campaign_id})
    )
    runs = session.execute(select(Run).where(Run.record_id == record_id).order_by(Run.id))
    out.runs = [wire.Run.model_validate(run) for run in runs.scalars()]
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


def cancel(session: Session, *, ids: list[int], now: datetime) -> list[int]:
    """Cancel records; a leased one's run is cancelled too (its agent hears at heartbeat)."""
    records = _load(session, ids)
    for record in records:
        leased = record.state in states.LEASED
        record.state = states.transition(
            Event.cancel, record.state, what=f"record '{record.key}'"
        ).value
        if leased and record.run_id is not None:
            session.execute(
                update(RUN)
                .where(
                    RUN.c.id == record.run_id,
                    literal_in(RUN.c.state, [s.value for s in wire.LIVE_RUN_STATES]),
                )
                .values(
                    state=wire.RunState.cancelled.value,
                    ended_at=now,
                    error="record cancelled by a user",
                )
            )
        record.error = "cancelled by a user"
        record.agent_id = None
        record.lease_expires_at = None
        record.updated_at = now
        session.add(record)
    session.flush()
    return [r.id for r in records]


def retry(session: Session, *, ids: list[int], now: datetime) -> list[int]:
    """Re-queue failed, cancelled or orphaned records with a fresh set of attempts."""
    records = _load(session, ids)
    for record in records:
        record.state = states.transition(
            Event.retry, record.state, what=f"record '{record.key}'"
        ).value
        record.attempts = 0
        record.error = None
        record.updated_at = now
        session.add(record)
    session.flush()
    return [r.id for r in records]


def _defaults(session: Session, campaign_ids: set[int]) -> dict[int, dict[str, Any]]:
    if not campaign_ids:
        return {}
    rows = session.execute(
        select(Campaign.id, Campaign.defaults).where(Campaign.id.in_(campaign_ids))
    )
    return dict(rows.all())


def _out(record: Record, document: Any, defaults: dict[int, dict[str, Any]]) -> wire.Record:
    return wire.Record.model_validate(
        {
            **record.model_dump(),
            "result": document,
            "derived_run_args": derive_run_args(defaults.get(record.campaign_id), record.run_args),
        }
    )
