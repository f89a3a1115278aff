"""Records: bulk create, list with keyset pagination, get with runs, cancel and retry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, JSON, Integer, Text, bindparam, cast, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from farmhand.agent import wire
from farmhand.server import states
from farmhand.server.db import literal_in
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


# Both statements skip keys the campaign already has and return the keys they inserted: no
# lookup first, and no race with a concurrent submission of the same keys.
_INSERT_SQLITE = (
    sqlite.insert(REC)
    .on_conflict_do_nothing(index_elements=[REC.c.campaign_id, REC.c.key])
    .returning(REC.c.key)
)
# On PostgreSQL the rows travel as one array per column: a multi-row VALUES has a placeholder
# per value, and psycopg parses a statement with more than 50 of them in Python, every time
# (it took 40 % of the server's time for 10,000 records).
_SPECS = (
    func.unnest(
        bindparam("b_keys", type_=ARRAY(Text)),
        bindparam("b_commands", type_=ARRAY(Text)),
        bindparam("b_priorities", type_=ARRAY(Integer)),
        bindparam("b_run_args", type_=ARRAY(Text)),
        bindparam("b_max_attempts", type_=ARRAY(Integer)),
    )
    .table_valued("key", "command", "priority", "run_args", "max_attempts")
    .render_derived()
)
_INSERT_POSTGRESQL = (
    postgresql.insert(REC)
    .from_select(
        [
            "campaign_id",
            "key",
            "command",
            "priority",
            "run_args",
            "max_attempts",
            "state",
            "attempts",
            "created_at",
            "updated_at",
        ],
        select(
            bindparam("b_campaign", type_=Integer),
            _SPECS.c.key,
            _SPECS.c.command,
            _SPECS.c.priority,
            cast(_SPECS.c.run_args, JSON),
            _SPECS.c.max_attempts,
            literal(wire.RecordState.ready.value),
            literal(0),
            bindparam("b_now", type_=UTCDateTime),
            bindparam("b_now", type_=UTCDateTime),
        ),
    )
    .on_conflict_do_nothing(index_elements=[REC.c.campaign_id, REC.c.key])
    .returning(REC.c.key)
)


def _insert_new(session: Session, campaign_id: int, rows: list[dict], now: datetime) -> set[str]:
    """Insert the rows whose keys the campaign does not have yet; the keys inserted."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        for row in rows:
            row.update(campaign_id=campaign_id, state=wire.RecordState.ready.value, attempts=0)
            row.update(created_at=now, updated_at=now)
        return set(conn.execute(_INSERT_SQLITE, rows).scalars())
    columns = {
        "b_keys": [r["key"] for r in rows],
        "b_commands": [r["command"] for r in rows],
        "b_priorities": [r["priority"] for r in rows],
        "b_run_args": [json.dumps(r["run_args"]) for r in rows],
        "b_max_attempts": [r["max_attempts"] for r in rows],
    }
    params = {**columns, "b_campaign": campaign_id, "b_now": now}
    return set(conn.execute(_INSERT_POSTGRESQL, params).scalars())


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
            "key": spec.key,
            "command": spec.command,
            "priority": spec.priority,
            "run_args": spec.run_args,
            "max_attempts": _max_attempts(spec.run_args, campaign_default, f"record '{spec.key}'"),
        }
        for spec in body.records
    ]
    created = _insert_new(session, campaign.id, rows, now)
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
