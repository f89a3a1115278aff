"""Leases already held: renew them (heartbeats), give all of an agent's back, and grant
them grace after a server start. Claims and expiry are in `leases.py`. Each function runs in
the caller's write transaction and flushes, never commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.queue import states
from farmhand.server.queue.states import LIVE_RUN, Event
from farmhand.server.tables import REC, RUN


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
