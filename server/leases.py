"""Leases: claim, renew, expire and bulk release. Each function runs inside the caller's
write transaction (routes own transactions) and flushes, never commits.

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
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from farmhand.agent import wire
from farmhand.server import lifecycle, metrics, states
from farmhand.server.db import literal_in
from farmhand.server.errors import Conflict, NotFound
from farmhand.server.states import Event
from farmhand.server.tables import Agent, Campaign, Record, RecordParent, RecordResult, Run

REC = Record.__table__
RUN = Run.__table__
CAMPAIGN = Campaign.__table__
EDGE = RecordParent.__table__
RESULT = RecordResult.__table__
LIVE_RUN = [s.value for s in wire.LIVE_RUN_STATES]


@dataclass
class Expired:
    """What one expiry pass did."""

    requeued: int = 0
    failed: int = 0


def _skip_locked(stmt: Any, session: Session) -> Any:
    """`FOR UPDATE SKIP LOCKED` where the database has it (SQLite serialises writers anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def active_agent(session: Session, agent_id: int, *, draining_ok: bool = False) -> Agent:
    """The agent row, or 404 if unknown and 409 if it has stopped (or is draining, unless
    `draining_ok`: a draining agent still renews the leases it is giving back)."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} is not registered")
    allowed = ("active", "draining") if draining_ok else ("active",)
    if agent.state not in allowed:
        what = (
            "is draining and gets no new leases"
            if agent.state == "draining"
            else ("has stopped; register a new agent")
        )
        raise Conflict(f"agent {agent_id} ({agent.name}) {what}")
    return agent


def expire(session: Session, *, now: datetime) -> Expired:
    """Turn leases that expired before `now` into lost runs; their records go back to ready,
    or to failed when no attempts remain."""
    expired = _skip_locked(
        select(REC.c.id).where(
            literal_in(REC.c.state, states.source_values(Event.requeue)),
            REC.c.lease_expires_at < now,
        ),
        session,
    )
    ids = list(session.execute(expired).scalars())
    if not ids:
        return Expired()
    session.execute(
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
    failed_rows = session.execute(
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
        lifecycle.records_ended(session, done=[], failed=dict(failed_rows), now=now)
    requeued = session.execute(
        update(REC)
        .where(REC.c.id.in_(ids), REC.c.attempts < REC.c.max_attempts)
        .values(state=states.target(Event.requeue).value, error="lease lost", **lease_gone)
    ).rowcount
    metrics.leases_expired(requeued=requeued, failed=failed)  # both the sweeper's and claims'
    return Expired(requeued=requeued, failed=failed)


def claim(
    session: Session,
    *,
    agent_id: int,
    max_records: int,
    clock: Callable[[], datetime],
    ttl: float,
    campaign_ids: list[int] | None = None,
    datasets: list[str] | None = None,
) -> list[wire.Lease]:
    """Lease up to `max_records` ready records to the agent, highest priority first.

    `clock` is read twice: before the claim (expiry and lease end) and after the records are
    locked (the runs' `claimed_at`), so a run never starts before the end of the attempt a
    concurrent transaction finished just before this claim took the record.
    """
    now = clock()
    active_agent(session, agent_id)
    expire(session, now=now)
    expires = now + timedelta(seconds=ttl)
    queue = select(REC.c.id).where(literal_in(REC.c.state, states.source_values(Event.claim)))
    if campaign_ids is not None:
        queue = queue.where(REC.c.campaign_id.in_(campaign_ids))
    if datasets is not None:
        queue = queue.where(REC.c.dataset.in_(datasets))
    queue = _skip_locked(
        queue.order_by(REC.c.priority.desc(), REC.c.id).limit(max_records), session
    )
    claimed = session.execute(
        update(REC)
        .where(REC.c.id.in_(queue.scalar_subquery()))
        .values(
            state=states.target(Event.claim).value,
            attempts=REC.c.attempts + 1,
            agent_id=agent_id,
            lease_expires_at=expires,
            updated_at=now,
        )
        .returning(
            REC.c.id,
            REC.c.campaign_id,
            REC.c.key,
            REC.c.command,
            REC.c.run_args,
            REC.c.temporary_run_args,
            REC.c.attempts,
            REC.c.priority,
        )
    ).all()
    if not claimed:
        return []
    claimed.sort(key=lambda row: (-row.priority, row.id))
    tokens = {row.id: secrets.token_urlsafe(18) for row in claimed}
    claimed_at = max(now, clock())
    runs = session.execute(
        insert(RUN).returning(RUN.c.id, RUN.c.record_id, sort_by_parameter_order=True),
        [
            {
                "record_id": row.id,
                "agent_id": agent_id,
                "token": tokens[row.id],
                "attempt": row.attempts,
                "state": wire.RunState.leased.value,
                "claimed_at": claimed_at,
                "run_args": row.temporary_run_args,
            }
            for row in claimed
        ],
    ).all()
    run_of = {run.record_id: run.id for run in runs}
    session.execute(
        update(REC).where(REC.c.id == bindparam("rid")).values(run_id=bindparam("new_run")),
        [{"rid": record_id, "new_run": run_id} for record_id, run_id in run_of.items()],
        execution_options={"synchronize_session": False},
    )
    campaign_ids = {row.campaign_id for row in claimed}
    session.execute(
        update(CAMPAIGN)
        .where(CAMPAIGN.c.id.in_(campaign_ids), CAMPAIGN.c.started_at.is_(None))
        .values(started_at=now)
    )
    defaults = dict(
        session.execute(
            select(CAMPAIGN.c.id, CAMPAIGN.c.defaults).where(CAMPAIGN.c.id.in_(campaign_ids))
        ).all()
    )
    parents = _parent_results(session, [row.id for row in claimed])
    return [
        wire.Lease(
            run_id=run_of[row.id],
            token=tokens[row.id],
            expires_at=expires,
            record_id=row.id,
            campaign_id=row.campaign_id,
            key=row.key,
            command=row.command,
            attempt=row.attempts,
            run_args=derive_run_args(
                defaults.get(row.campaign_id), row.run_args, row.temporary_run_args
            ),
            parents=parents.get(row.id, []),
        )
        for row in claimed
    ]


def _parent_results(session: Session, record_ids: list[int]) -> dict[int, list[wire.ParentResult]]:
    """Each claimed record's parents with their result documents (most have none)."""
    rows = session.execute(
        select(EDGE.c.record_id, REC.c.id, REC.c.key, RESULT.c.document)
        .join(REC, REC.c.id == EDGE.c.parent_id)
        .outerjoin(RESULT, RESULT.c.record_id == REC.c.id)
        .where(EDGE.c.record_id.in_(record_ids))
        .order_by(EDGE.c.record_id, REC.c.id)
    )
    out: dict[int, list[wire.ParentResult]] = {}
    for child, pid, key, document in rows:
        out.setdefault(child, []).append(wire.ParentResult(record_id=pid, key=key, result=document))
    return out


def derive_run_args(
    defaults: dict[str, Any] | None,
    overrides: dict[str, Any] | None,
    temporary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Campaign defaults, then record overrides, then one run's temporary args (later wins)."""
    return {**(defaults or {}), **(overrides or {}), **(temporary or {})}


def renew(
    session: Session, *, agent_id: int, run_ids: list[int], now: datetime, ttl: float
) -> tuple[int, datetime]:
    """Extend the leases of the listed runs this agent holds; returns (renewed, new expiry).

    Only runs the agent names are renewed: a lease whose claim answer never reached the
    agent (lost in transit) must still expire.
    """
    expires = now + timedelta(seconds=ttl)
    renewed = 0
    for start in range(0, len(run_ids), 5000):
        chunk = run_ids[start : start + 5000]
        renewed += session.execute(
            update(REC)
            .where(
                REC.c.agent_id == agent_id,
                REC.c.run_id.in_(chunk),
                literal_in(REC.c.state, states.source_values(Event.release)),
            )
            .values(lease_expires_at=expires)
        ).rowcount
    return renewed, expires


def release_agent(session: Session, *, agent_id: int, now: datetime, reason: str) -> int:
    """Give back every lease the agent holds without spending attempts; returns how many."""
    # Records first, then runs: the lock order of every writer.
    held = (
        session.execute(
            update(REC)
            .where(
                REC.c.agent_id == agent_id,
                literal_in(REC.c.state, states.source_values(Event.release)),
            )
            .values(
                state=states.target(Event.release).value,
                attempts=REC.c.attempts - 1,
                agent_id=None,
                lease_expires_at=None,
                updated_at=now,
            )
            .returning(REC.c.run_id)
        )
        .scalars()
        .all()
    )
    if held:
        session.execute(
            update(RUN)
            .where(RUN.c.id.in_(held), literal_in(RUN.c.state, LIVE_RUN))
            .values(state=wire.RunState.released.value, ended_at=now, error=reason)
        )
    return len(held)


def grant_grace(session: Session, *, now: datetime, grace: float) -> int:
    """After a server start, give every live lease at least `grace` seconds (invariant 3)."""
    until = now + timedelta(seconds=grace)
    return session.execute(
        update(REC)
        .where(
            literal_in(REC.c.state, states.source_values(Event.release)),
            REC.c.lease_expires_at < until,
        )
        .values(lease_expires_at=until)
    ).rowcount
