"""Leases: claim and expire (renewal and bulk release live in `held_leases.py`). Each function
runs inside the caller's write transaction (routes own transactions) and flushes, never commits.

The claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`: on PostgreSQL the inner
select takes `FOR UPDATE SKIP LOCKED`, on SQLite the whole transaction holds the write lock
from `BEGIN IMMEDIATE`. Expired leases are turned back into ready records in the same
transaction, so correctness never waits on the background sweeper.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Integer,
    Text,
    bindparam,
    column,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand.agent import wire
from farmhand.server import inputs, lifecycle, metrics, states
from farmhand.server.db import connection_of, execute_rows, literal_in, unnest
from farmhand.server.errors import Conflict, FarmhandError, NotFound
from farmhand.server.ownership import not_yours
from farmhand.server.states import Event
from farmhand.server.tables import (
    Agent,
    Campaign,
    Checkpoint,
    Record,
    RecordInput,
    RecordParent,
    RecordResult,
    Run,
    UTCDateTime,
)

REC = Record.__table__
RUN = Run.__table__
CAMPAIGN = Campaign.__table__
AGENT = Agent.__table__
EDGE = RecordParent.__table__
RESULT = RecordResult.__table__
LIVE_RUN = [s.value for s in wire.LIVE_RUN_STATES]


@dataclass
class Expired:
    """What one expiry pass did."""

    requeued: int = 0
    failed: int = 0


def _refusal(agent_id: int, name: str, state: str, draining_ok: bool) -> FarmhandError | None:
    """Why an agent in `state` may not act (None when it may)."""
    allowed = ("active", "draining") if draining_ok else ("active",)
    if state in allowed:
        return None
    what = (
        "is draining and gets no new leases"
        if state == "draining"
        else "has stopped; register a new agent"
    )
    return Conflict(f"agent {agent_id} ({name}) {what}")


def active_agent(
    session: Session, agent_id: int, *, draining_ok: bool = False, agent_token: int | None = None
) -> Agent:
    """The agent row, or 404 if unknown, 403 if it is not `agent_token`'s (see `not_yours`)
    and 409 if it has stopped (or is draining, unless `draining_ok`: a draining agent still
    renews the leases it is giving back)."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} is not registered")
    refusal = not_yours(agent_id, agent.name, agent.token_id, agent_token) or _refusal(
        agent_id, agent.name, agent.state, draining_ok
    )
    if refusal is not None:
        raise refusal
    return agent


def expire(tx: Session | Connection, *, now: datetime) -> Expired:
    """Turn leases that expired before `now` into lost runs; their records go back to ready,
    or to failed when no attempts remain."""
    expired = (
        select(REC.c.id)
        .where(
            literal_in(REC.c.state, states.source_values(Event.requeue)),
            REC.c.lease_expires_at < now,
        )
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
    )
    conn = connection_of(tx)
    ids = list(conn.execute(expired).scalars())
    if not ids:
        return Expired()
    conn.execute(
        update(RUN)
        .where(RUN.c.id.in_(select(REC.c.run_id).where(REC.c.id.in_(ids))))
        .where(literal_in(RUN.c.state, LIVE_RUN))
        .values(
            state=wire.RunState.lost.value,
            ended_at=now,
            error="lease expired: the agent stopped renewing it",
        )
    )
    lease_gone = {"agent_id": None, "lease_expires_at": None, "updated_at": now}
    failed_rows = conn.execute(
        update(REC)
        .where(REC.c.id.in_(ids), REC.c.attempts >= REC.c.max_attempts)
        .values(
            state=states.target(Event.fail).value,
            error="lease lost and no attempts left (max_attempts reached)",
            **lease_gone,
        )
        .returning(REC.c.id, REC.c.key)
    ).all()
    failed = len(failed_rows)
    if failed_rows:
        lifecycle.records_ended(conn, done=[], failed=dict(failed_rows), now=now)
    requeued = conn.execute(
        update(REC)
        .where(REC.c.id.in_(ids), REC.c.attempts < REC.c.max_attempts)
        .values(state=states.target(Event.requeue).value, error="lease lost", **lease_gone)
    ).rowcount
    metrics.leases_expired(requeued=requeued, failed=failed)  # both the sweeper's and claims'
    return Expired(requeued=requeued, failed=failed)


# The claim's statements are built once: building a statement costs more than running it.


@cache
def _gate(dialect: str) -> Any:
    """One round trip before a claim: the agent's state and token, whether any lease has run
    out, and on SQLite the run table's last id: the claim numbers the new runs from it (it
    holds the write lock), from the AUTOINCREMENT counter rather than max(id), so no id is
    handed out twice."""
    due = exists().where(
        literal_in(REC.c.state, states.source_values(Event.requeue)),
        REC.c.lease_expires_at < bindparam("b_now", type_=UTCDateTime),
    )
    columns = [AGENT.c.name, AGENT.c.state, AGENT.c.token_id, due.label("due")]
    if dialect != "postgresql":
        sequences = table("sqlite_sequence", column("name"), column("seq"))
        last = select(func.coalesce(func.max(sequences.c.seq), 0)).where(
            sequences.c.name == RUN.name
        )
        columns.append(last.scalar_subquery().label("last_run"))
    return select(*columns).where(AGENT.c.id == bindparam("b_agent"))


def _claimed(column: Any) -> Any:
    """`column` of the claimed row as `record.column`: SQLAlchemy drops table names from
    RETURNING on SQLite, subqueries included, and a bare `id` in `EXISTS (SELECT * FROM
    checkpoint WHERE record_id = id)` is the checkpoint's own (issue 13)."""
    return literal_column(f"{column.table.name}.{column.name}", column.type)


_OF_CAMPAIGN = CAMPAIGN.c.id == _claimed(REC.c.campaign_id)
#: Returned with each claimed record, so no statement reads the campaign afterwards.
_DEFAULTS = select(CAMPAIGN.c.defaults).where(_OF_CAMPAIGN).scalar_subquery()
_HAS_PARENTS = exists().where(EDGE.c.record_id == _claimed(REC.c.id))
_HAS_INPUTS = exists().where(RecordInput.__table__.c.record_id == _claimed(REC.c.id))
_HAS_CHECKPOINT = exists().where(Checkpoint.__table__.c.record_id == _claimed(REC.c.id))
_UNSTARTED = select(CAMPAIGN.c.started_at).where(_OF_CAMPAIGN).scalar_subquery().is_(None)


def _fits(column: Any, name: str) -> Any:
    # A record that names no amount asks for none the claim can check (the agent shares
    # its cores among such records itself).
    return or_(column.is_(None), column <= bindparam(name))


#: What a claim may narrow the queue by: its bound parameter is `b_<name>`.
_FILTERS = {
    "campaigns": REC.c.campaign_id.in_(bindparam("b_campaigns", expanding=True)),
    "datasets": REC.c.dataset.in_(bindparam("b_datasets", expanding=True)),
    "runners": REC.c.runner.in_(bindparam("b_runners", expanding=True)),
    "cores": _fits(REC.c.cores, "b_cores"),
    "gpus": _fits(REC.c.gpus, "b_gpus"),
    "memory_mb": _fits(REC.c.memory_mb, "b_memory_mb"),
    "walltime": _fits(REC.c.walltime, "b_walltime"),
}


@cache
def _claim_statement(dialect: str, filters: frozenset[str]) -> Any:
    """`UPDATE record … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …`,
    with the `filters` (names of `_FILTERS`) the claim asks for."""
    queue = select(REC.c.id).where(literal_in(REC.c.state, states.source_values(Event.claim)))
    for name in sorted(filters):
        queue = queue.where(_FILTERS[name])
    queue = (
        queue.order_by(REC.c.priority.desc(), REC.c.id)
        .limit(bindparam("b_limit"))
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
    )
    values: dict[str, Any] = {
        "state": states.target(Event.claim).value,
        "attempts": REC.c.attempts + 1,
        "agent_id": bindparam("b_agent"),
        "lease_expires_at": bindparam("b_expires", type_=UTCDateTime),
        "updated_at": bindparam("b_now", type_=UTCDateTime),
    }
    if dialect == "postgresql":
        # The runs' ids come from their sequence right here, so the claim needs no second
        # UPDATE of record.run_id after inserting them: one round trip less.
        values["run_id"] = func.nextval(func.pg_get_serial_sequence(RUN.name, "id"))
    return (
        update(REC)
        .where(REC.c.id.in_(queue.scalar_subquery()))
        .values(**values)
        .returning(
            REC.c.id,
            REC.c.campaign_id,
            REC.c.key,
            REC.c.command,
            REC.c.run_args,
            REC.c.temporary_run_args,
            REC.c.attempts,
            REC.c.priority,
            REC.c.run_id,
            _HAS_PARENTS.label("has_parents"),
            _HAS_INPUTS.label("has_inputs"),
            _HAS_CHECKPOINT.label("has_checkpoint"),
            _DEFAULTS.label("defaults"),
            _UNSTARTED.label("unstarted"),
        )
    )


_NEW_RUN = {
    "agent_id": bindparam("b_agent"),
    "state": literal(wire.RunState.leased.value),
    "claimed_at": bindparam("b_claimed_at", type_=UTCDateTime),
}
_INSERT_RUNS = insert(RUN).values(
    id=bindparam("b_id"),
    record_id=bindparam("b_record_id"),
    token=bindparam("b_token"),
    attempt=bindparam("b_attempt"),
    **_NEW_RUN,
)
_NEW_RUNS = unnest(id=Integer, record_id=Integer, token=Text, attempt=Integer)
_INSERT_RUNS_POSTGRESQL = insert(RUN).from_select(
    ["id", "record_id", "token", "attempt", *_NEW_RUN],
    select(
        _NEW_RUNS.c.id, _NEW_RUNS.c.record_id, _NEW_RUNS.c.token, _NEW_RUNS.c.attempt
    ).add_columns(*_NEW_RUN.values()),
)
_SET_RUN_IDS = (
    update(REC)
    .where(REC.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        run_id=select(func.max(RUN.c.id))
        .where(RUN.c.record_id == REC.c.id)
        .correlate(REC)
        .scalar_subquery()
    )
)
_START_CAMPAIGNS = (
    update(CAMPAIGN)
    .where(CAMPAIGN.c.id.in_(bindparam("b_ids", expanding=True)), CAMPAIGN.c.started_at.is_(None))
    .values(started_at=bindparam("b_now", type_=UTCDateTime))
)


def claim(
    tx: Session | Connection,
    *,
    agent_id: int,
    max_records: int,
    clock: Callable[[], datetime],
    ttl: float,
    campaign_ids: list[int] | None = None,
    datasets: list[str] | None = None,
    runners: list[str] | None = None,
    free: wire.Resources | None = None,
    walltime_left: float | None = None,
    agent_token: int | None = None,
) -> list[wire.Lease]:
    """Lease up to `max_records` ready records to the agent, highest priority first; only
    records whose walltime fits the agent's `walltime_left` seconds, when given. With
    `agent_token`, only an agent registered with that token may claim (else 403).

    `clock` is read twice: before the claim (expiry and lease end) and after the records are
    locked (the runs' `claimed_at`), so a run never starts before the end of the attempt a
    concurrent transaction finished just before this claim took the record.
    """
    now = clock()
    conn = connection_of(tx)
    dialect = conn.dialect.name
    gate = conn.execute(_gate(dialect), {"b_agent": agent_id, "b_now": now}).first()
    if gate is None:
        raise NotFound(f"agent {agent_id} is not registered")
    refusal = not_yours(agent_id, gate.name, gate.token_id, agent_token) or _refusal(
        agent_id, gate.name, gate.state, draining_ok=False
    )
    if refusal is not None:
        raise refusal
    if gate.due:
        expire(conn, now=now)
    expires = now + timedelta(seconds=ttl)
    params = {
        "b_agent": agent_id,
        "b_limit": max_records,
        "b_expires": expires,
        "b_now": now,
    }
    wanted = {
        "campaigns": campaign_ids,
        "datasets": datasets,
        "runners": runners,
        "walltime": walltime_left,
    }
    if free is not None:
        wanted.update(cores=free.cores, gpus=free.gpus, memory_mb=free.memory_mb)
    wanted = {name: value for name, value in wanted.items() if value is not None}
    params.update({f"b_{name}": value for name, value in wanted.items()})
    statement = _claim_statement(dialect, frozenset(wanted))
    claimed = conn.execute(statement, params).all()
    if not claimed:
        return []
    claimed.sort(key=lambda row: (-row.priority, row.id))
    claimed_at = max(now, clock())
    runs = [
        {
            "b_id": row.run_id if dialect == "postgresql" else gate.last_run + number,
            "b_record_id": row.id,
            "b_token": secrets.token_urlsafe(18),
            "b_attempt": row.attempts,
        }
        for number, row in enumerate(claimed, start=1)
    ]
    execute_rows(
        conn, _INSERT_RUNS, _INSERT_RUNS_POSTGRESQL, runs, b_agent=agent_id, b_claimed_at=claimed_at
    )
    if dialect != "postgresql":
        conn.execute(_SET_RUN_IDS, {"b_ids": [row.id for row in claimed]})
    temporary = [
        {"b_id": run["b_id"], "b_run_args": row.temporary_run_args}
        for run, row in zip(runs, claimed, strict=True)
        if row.temporary_run_args is not None
    ]
    if temporary:  # rare: only records retried with temporary run_args
        conn.execute(_SET_RUN_ARGS, temporary)
    parents = _parent_results(conn, [row.id for row in claimed if row.has_parents])
    staged = inputs.of_records(conn, [row.id for row in claimed if row.has_inputs])
    restore = inputs.newest_checkpoints(conn, [row.id for row in claimed if row.has_checkpoint])
    unstarted = {row.campaign_id for row in claimed if row.unstarted}
    if unstarted:
        conn.execute(_START_CAMPAIGNS, {"b_ids": sorted(unstarted), "b_now": now})
    return [
        wire.Lease(
            run_id=run["b_id"],
            token=run["b_token"],
            expires_at=expires,
            record_id=row.id,
            campaign_id=row.campaign_id,
            key=row.key,
            command=row.command,
            attempt=row.attempts,
            run_args=derive_run_args(row.defaults, row.run_args, row.temporary_run_args),
            parents=parents.get(row.id, []),
            inputs=staged.get(row.id, {}),
            checkpoint=restore.get(row.id),
        )
        for run, row in zip(runs, claimed, strict=True)
    ]


_SET_RUN_ARGS = (
    update(RUN).where(RUN.c.id == bindparam("b_id")).values(run_args=bindparam("b_run_args"))
)


def _parent_results(conn: Connection, record_ids: list[int]) -> dict[int, list[wire.ParentResult]]:
    """The parents of these claimed records, with their result documents and the archives
    of their successful runs."""
    if not record_ids:
        return {}
    rows = conn.execute(
        select(EDGE.c.record_id, REC.c.id, REC.c.key, RESULT.c.document, RUN.c.archive)
        .join(REC, REC.c.id == EDGE.c.parent_id)
        .outerjoin(RESULT, RESULT.c.record_id == REC.c.id)
        .outerjoin(RUN, RUN.c.id == RESULT.c.run_id)
        .where(EDGE.c.record_id.in_(record_ids))
        .order_by(EDGE.c.record_id, REC.c.id)
    )
    out: dict[int, list[wire.ParentResult]] = {}
    for child, pid, key, document, archive in rows:
        out.setdefault(child, []).append(
            wire.ParentResult(record_id=pid, key=key, result=document, archive=archive)
        )
    return out


def derive_run_args(
    defaults: dict[str, Any] | None,
    overrides: dict[str, Any] | None,
    temporary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Campaign defaults, then record overrides, then one run's temporary args (later wins)."""
    return {**(defaults or {}), **(overrides or {}), **(temporary or {})}
