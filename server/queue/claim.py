"""The claim: lease up to n ready records to one agent, in the caller's write transaction
(routes own transactions; this flushes, never commits).

Its heart is one statement, `claim_statement`: `UPDATE record … WHERE id IN (SELECT … LIMIT n)
RETURNING …`. On PostgreSQL the inner select takes `FOR UPDATE SKIP LOCKED`; on SQLite the
transaction holds the write lock from `BEGIN IMMEDIATE`. Expired leases are turned back into
ready records first, in the same transaction, so correctness never waits on the sweeper.
The SQL each dialect receives is checked in under tests/server/queue/sql/.

Statements are built once per dialect and filter set: building one costs more than running it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
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

from farmhand import wire
from farmhand.server import prepared
from farmhand.server.catalog import inputs
from farmhand.server.db import connection_of, literal_in, unnest
from farmhand.server.errors import NotFound
from farmhand.server.ownership import not_yours
from farmhand.server.prepared import ListOf, in_list
from farmhand.server.queue import states
from farmhand.server.queue.leases import derive_run_args, expire, refusal_of
from farmhand.server.queue.states import Event
from farmhand.server.tables import (
    AGENT,
    CAMPAIGN,
    CHECKPOINT,
    EDGE,
    INPUT,
    REC,
    RESULT,
    RUN,
    UTCDateTime,
)

__all__ = [
    "FILTERS",
    "admit",
    "claim",
    "claim_statement",
    "due",
    "gate_params",
    "gate_statement",
    "judge",
    "lapsed",
    "run_statements",
]

#: What a claim may narrow the queue by (each bound as `b_<name>`).
FILTERS = (
    "campaign",
    "campaigns",
    "datasets",
    "runners",
    "cores",
    "gpus",
    "memory_mb",
    "walltime",
)


def due(now: Any) -> Any:
    """A ready record's wait after a failed attempt (`retry_delay`) is over at `now`."""
    return or_(REC.c.not_before.is_(None), REC.c.not_before <= now)


def lapsed(now: Any) -> Any:
    """Some live lease ran out before `now` (read from ix_record_live_lease)."""
    return exists().where(
        literal_in(REC.c.state, states.source_values(Event.requeue)),
        REC.c.lease_expires_at < now,
    )


def admit(conn: Connection, *, agent_id: int, now: datetime, agent_token: int | None = None) -> Any:
    """The agent's row for a claim (its name, state, token, whether any lease has run out
    and on SQLite the run table's last id), or the refusal a claim would get: 404 for an
    unknown agent, 403 for another token's, 409 for one draining or stopped. Read-only."""
    found = prepared.fetch(conn, gate_statement(conn.dialect.name), gate_params(agent_id, now))
    return judge(found, agent_id=agent_id, agent_token=agent_token)


def gate_params(agent_id: int, now: datetime) -> dict[str, Any]:
    """The parameters of `gate_statement` for `agent_id` at `now`."""
    return {"b_agent": agent_id, "b_now": now}


def judge(found: list[Any], *, agent_id: int, agent_token: int | None = None) -> Any:
    """`admit` on the rows of `gate_statement` read elsewhere (the quiet queue's check)."""
    if not found:
        raise NotFound(f"agent {agent_id} is not registered")
    (gate,) = found
    refusal = not_yours(agent_id, gate.name, gate.token_id, agent_token) or refusal_of(
        agent_id, gate.name, gate.state, draining_ok=False
    )
    if refusal is not None:
        raise refusal
    return gate


@cache
def gate_statement(dialect: str) -> Any:
    """One round trip before a claim: the agent's state and token, whether any lease has run
    out, and on SQLite the run table's last id: the claim numbers the new runs from it (it
    holds the write lock), from the AUTOINCREMENT counter rather than max(id), so no id is
    handed out twice."""
    lapsed_now = lapsed(bindparam("b_now", type_=UTCDateTime))
    columns = [AGENT.c.name, AGENT.c.state, AGENT.c.token_id, lapsed_now.label("due")]
    if dialect != "postgresql":
        sequences = table("sqlite_sequence", column("name"), column("seq"))
        last = select(func.coalesce(func.max(sequences.c.seq), 0)).where(
            sequences.c.name == RUN.name
        )
        columns.append(last.scalar_subquery().label("last_run"))
    return select(*columns).where(AGENT.c.id == bindparam("b_agent"))


@cache
def claim_statement(dialect: str, filters: frozenset[str]) -> Any:
    """`UPDATE record SET <leased> WHERE id IN (<the queue>) RETURNING <the lease's makings>`,
    the queue narrowed by `filters` (names from `FILTERS`)."""

    def fits(amount: Any, name: str) -> Any:
        # A record that names no amount asks for none the claim can check (the agent shares
        # its cores among such records itself).
        return or_(amount.is_(None), amount <= bindparam(name))

    narrow = {
        # One campaign by equality: SQLite then reads it in claim order from
        # ix_record_ready_campaign (for a list it reads ix_record_campaign_state and sorts).
        "campaign": REC.c.campaign_id == bindparam("b_campaign"),
        "campaigns": in_list(REC.c.campaign_id, bindparam("b_campaigns", type_=ListOf(Integer))),
        "datasets": in_list(REC.c.dataset, bindparam("b_datasets", type_=ListOf(Text))),
        "runners": in_list(REC.c.runner, bindparam("b_runners", type_=ListOf(Text))),
        "cores": fits(REC.c.cores, "b_cores"),
        "gpus": fits(REC.c.gpus, "b_gpus"),
        "memory_mb": fits(REC.c.memory_mb, "b_memory_mb"),
        "walltime": fits(REC.c.walltime, "b_walltime"),
    }
    queue = (
        select(REC.c.id)
        .where(literal_in(REC.c.state, states.source_values(Event.claim)))
        .where(due(bindparam("b_now", type_=UTCDateTime)))
        .where(*(narrow[name] for name in sorted(filters)))
        .order_by(REC.c.priority.desc(), REC.c.id)
        .limit(bindparam("b_limit"))
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
    )
    leased: dict[str, Any] = {
        "state": states.target(Event.claim).value,
        "attempts": REC.c.attempts + 1,
        "agent_id": bindparam("b_agent"),
        "lease_expires_at": bindparam("b_expires", type_=UTCDateTime),
        "updated_at": bindparam("b_now", type_=UTCDateTime),
    }
    if dialect == "postgresql":
        # The runs' ids come from their sequence right here, so the claim needs no second
        # UPDATE of record.run_id after inserting them: one round trip less.
        leased["run_id"] = func.nextval(func.pg_get_serial_sequence(RUN.name, "id"))

    # The claimed row's columns as `record.<column>`: SQLAlchemy drops table names from
    # RETURNING on SQLite, subqueries included, and a bare `id` in `EXISTS (SELECT * FROM
    # checkpoint WHERE record_id = id)` is the checkpoint's own (issue 13).
    claimed_id = literal_column("record.id", Integer)
    its_campaign = CAMPAIGN.c.id == literal_column("record.campaign_id", Integer)
    return (
        update(REC)
        .where(REC.c.id.in_(queue.scalar_subquery()))
        .values(**leased)
        .returning(
            REC.c.id,
            REC.c.campaign_id,
            REC.c.key,
            REC.c.command,
            REC.c.params,
            REC.c.run_args,
            REC.c.temporary_run_args,
            REC.c.attempts,
            REC.c.priority,
            REC.c.run_id,
            # What else the lease needs, so no statement looks for what is not there.
            exists().where(EDGE.c.record_id == claimed_id).label("has_parents"),
            exists().where(INPUT.c.record_id == claimed_id).label("has_inputs"),
            exists().where(CHECKPOINT.c.record_id == claimed_id).label("has_checkpoint"),
            select(CAMPAIGN.c.defaults).where(its_campaign).scalar_subquery().label("defaults"),
            select(CAMPAIGN.c.started_at)
            .where(its_campaign)
            .scalar_subquery()
            .is_(None)
            .label("unstarted"),
        )
    )


@cache
def run_statements(dialect: str) -> dict[str, Any]:
    """What follows the claim: insert one run per claimed record (one statement on
    PostgreSQL, an executemany on SQLite, which then points each record at its run), copy
    temporary run_args onto their runs, and mark campaigns whose first record this is."""
    new_run = {
        "agent_id": bindparam("b_agent"),
        "state": literal(wire.RunState.leased.value),
        "claimed_at": bindparam("b_claimed_at", type_=UTCDateTime),
    }
    given = ["id", "record_id", "token", "attempt"]
    if dialect == "postgresql":
        rows = unnest(id=Integer, record_id=Integer, token=Text, attempt=Integer)
        insert_runs = insert(RUN).from_select(
            [*given, *new_run],
            select(*(rows.c[name] for name in given)).add_columns(*new_run.values()),
        )
        set_run_ids = None
    else:
        insert_runs = insert(RUN).values(
            **{name: bindparam(f"b_{name}") for name in given}, **new_run
        )
        set_run_ids = (
            update(REC)
            .where(in_list(REC.c.id, bindparam("b_ids", type_=ListOf(Integer))))
            .values(
                run_id=select(func.max(RUN.c.id))
                .where(RUN.c.record_id == REC.c.id)
                .correlate(REC)
                .scalar_subquery()
            )
        )
    return {
        "insert_runs": insert_runs,
        "set_run_ids": set_run_ids,
        "set_run_args": update(RUN)
        .where(RUN.c.id == bindparam("b_id"))
        .values(run_args=bindparam("b_run_args")),
        "start_campaigns": update(CAMPAIGN)
        .where(
            in_list(CAMPAIGN.c.id, bindparam("b_ids", type_=ListOf(Integer))),
            CAMPAIGN.c.started_at.is_(None),
        )
        .values(started_at=bindparam("b_now", type_=UTCDateTime)),
    }


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
    """Lease up to `max_records` ready records to the agent, highest priority first, leaving
    those still waiting out a failed attempt's retry delay; only records whose walltime
    fits the agent's `walltime_left` seconds, when given. With `agent_token`, only an agent
    registered with that token may claim (else 403).

    `clock` is read twice: before the claim (expiry and lease end) and after the records are
    locked (the runs' `claimed_at`), so a run never starts before the end of the attempt a
    concurrent transaction finished just before this claim took the record.
    """
    now = clock()
    conn = connection_of(tx)
    dialect = conn.dialect.name
    gate = admit(conn, agent_id=agent_id, now=now, agent_token=agent_token)
    if gate.due:
        expire(conn, now=now)

    expires = now + timedelta(seconds=ttl)
    wanted = {
        "campaign": campaign_ids[0] if campaign_ids and len(campaign_ids) == 1 else None,
        "campaigns": campaign_ids if campaign_ids is None or len(campaign_ids) != 1 else None,
        "datasets": datasets,
        "runners": runners,
        "walltime": walltime_left,
        **({} if free is None else free.model_dump(include={"cores", "gpus", "memory_mb"})),
    }
    wanted = {name: value for name, value in wanted.items() if value is not None}
    params = {"b_agent": agent_id, "b_limit": max_records, "b_expires": expires, "b_now": now}
    params.update({f"b_{name}": value for name, value in wanted.items()})
    claimed = prepared.fetch(conn, claim_statement(dialect, frozenset(wanted)), params)
    if not claimed:
        return []
    claimed.sort(key=lambda row: (-row.priority, row.id))

    then = run_statements(dialect)
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
    insert_runs = then["insert_runs"]
    prepared.execute_rows(
        conn, insert_runs, insert_runs, runs, b_agent=agent_id, b_claimed_at=claimed_at
    )
    if then["set_run_ids"] is not None:
        prepared.execute(conn, then["set_run_ids"], {"b_ids": [row.id for row in claimed]})
    temporary = [
        {"b_id": run["b_id"], "b_run_args": row.temporary_run_args}
        for run, row in zip(runs, claimed, strict=True)
        if row.temporary_run_args is not None
    ]
    if temporary:  # rare: only records retried with temporary run_args
        conn.execute(then["set_run_args"], temporary)
    unstarted = {row.campaign_id for row in claimed if row.unstarted}
    if unstarted:
        prepared.execute(conn, then["start_campaigns"], {"b_ids": sorted(unstarted), "b_now": now})

    parents = _parent_results(conn, [row.id for row in claimed if row.has_parents])
    staged = inputs.of_records(conn, [row.id for row in claimed if row.has_inputs])
    restore = inputs.newest_checkpoints(conn, [row.id for row in claimed if row.has_checkpoint])
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
            params=row.params,
            run_args=derive_run_args(row.defaults, row.run_args, row.temporary_run_args),
            parents=parents.get(row.id, []),
            inputs=staged.get(row.id, {}),
            checkpoint=restore.get(row.id),
        )
        for run, row in zip(runs, claimed, strict=True)
    ]


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
