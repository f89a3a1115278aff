"""Leases: who may act on them, and their expiry (the claim is in `claim.py`, renewal and
bulk release in `held_leases.py`). Each function runs inside the caller's write transaction
(routes own transactions) and flushes, never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import connection_of, literal_in
from farmhand.server.errors import Conflict, FarmhandError, NotFound
from farmhand.server.ownership import not_yours
from farmhand.server.queue import lifecycle, states
from farmhand.server.queue.states import LIVE_RUN, Event
from farmhand.server.serving import metrics
from farmhand.server.tables import (
    REC,
    RUN,
    Agent,
)


@dataclass
class Expired:
    """What one expiry pass did."""

    requeued: int = 0
    failed: int = 0


def refusal_of(agent_id: int, name: str, state: str, draining_ok: bool) -> FarmhandError | None:
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
    refusal = not_yours(agent_id, agent.name, agent.token_id, agent_token) or refusal_of(
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


def derive_run_args(
    defaults: dict[str, Any] | None,
    overrides: dict[str, Any] | None,
    temporary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Campaign defaults, then record overrides, then one run's temporary args (later wins)."""
    return {**(defaults or {}), **(overrides or {}), **(temporary or {})}
