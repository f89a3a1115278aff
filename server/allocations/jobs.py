"""Autoscalers' leases and the batch jobs (allocations) they submitted.

One autoscaler acts for a name (its scheduler and filters) at a time: it acquires the
name's lease (409 while another holds it unexpired), renews it with every cycle, storing
its status, and releases it when it stops. Every write of an allocation carries the lease's
token: a token that is not the name's live one (the lease expired and another autoscaler
took it over) gets 409 and changes nothing, so two autoscalers never both submit.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from farmhand import wire
from farmhand.server.errors import Conflict, NotFound
from farmhand.server.tables import AGENT, Allocation, Autoscaler

#: Allocations a listing returns at most (newest first).
MAX_LISTED = 500
#: The agent label that names the batch job an agent runs in, per scheduler.
JOB_LABELS = {"slurm": "slurm_job", "pbs": "pbs_job"}


def acquire(
    session: Session, *, name: str, body: wire.AutoscalerAcquire, now: datetime
) -> wire.Autoscaler:
    """Take the lease on `name` (a fresh token), unless another holder's is still live."""
    row = session.get(Autoscaler, name, with_for_update=True)
    expires = now + timedelta(seconds=body.ttl)
    if row is not None and row.expires_at > now:
        raise Conflict(
            f"autoscaler '{name}' is held by {row.holder} until {row.expires_at:%H:%M:%S} UTC; "
            "stop it, or use another --name"
        )
    if row is None:
        row = Autoscaler(name=name, holder=body.holder, token="", expires_at=expires)
    row.holder, row.token = body.holder, secrets.token_urlsafe(24)
    row.expires_at, row.updated_at = expires, now
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # PostgreSQL: another first acquire of the name committed first
        raise Conflict(f"autoscaler '{name}' was just taken by another holder") from None
    return _answer(row, with_token=True)


def renew(
    session: Session, *, name: str, body: wire.AutoscalerRenew, now: datetime
) -> wire.Autoscaler:
    """Extend the holder's lease and keep its status (409 for a token that is not live)."""
    row = fence(session, name=name, token=body.token, now=now)
    row.expires_at = now + timedelta(seconds=body.ttl)
    row.updated_at, row.status = now, body.status
    session.add(row)
    session.flush()
    return _answer(row, with_token=True)


def release(session: Session, *, name: str, token: str, now: datetime) -> wire.Autoscaler:
    """End the holder's lease now; its status stays for people to read."""
    row = fence(session, name=name, token=token, now=now)
    row.expires_at = row.updated_at = now
    session.add(row)
    session.flush()
    return _answer(row)


def fence(session: Session, *, name: str, token: str, now: datetime) -> Autoscaler:
    """The lease row of `name` if `token` is its live token, else 404/409."""
    row = session.get(Autoscaler, name, with_for_update=True)
    if row is None:
        raise NotFound(f"autoscaler '{name}' has never held a lease")
    same = secrets.compare_digest(row.token.encode(), token.encode())
    if not same or row.expires_at <= now:
        raise Conflict(
            f"the lease on autoscaler '{name}' is not yours any more (held by {row.holder}); "
            "acquire it again"
        )
    return row


def create(session: Session, *, body: wire.AllocationCreate, now: datetime) -> wire.Allocation:
    """Record a job the lease holder submitted (409 if the job is already recorded)."""
    fence(session, name=body.autoscaler, token=body.token, now=now)
    taken = session.execute(
        select(Allocation.id).where(
            Allocation.scheduler == body.scheduler, Allocation.job_id == body.job_id
        )
    ).first()
    if taken is not None:
        raise Conflict(f"{body.scheduler} job {body.job_id} is already allocation {taken[0]}")
    row = Allocation(
        **body.model_dump(exclude={"token", "state"}),
        state=body.state.value,
        submitted_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return _allocation(row, [])


def update(
    session: Session, *, allocation_id: int, body: wire.AllocationUpdate, now: datetime
) -> wire.Allocation:
    """A job's new state, written by the holder of its autoscaler's lease."""
    row = session.get(Allocation, allocation_id, with_for_update=True)
    if row is None:
        raise NotFound(f"allocation {allocation_id} does not exist")
    fence(session, name=row.autoscaler, token=body.token, now=now)
    row.state, row.updated_at = body.state.value, now
    if body.note is not None:
        row.note = body.note
    session.add(row)
    session.flush()
    return _allocation(row, agents_of(session, [row])[row.id or 0])


def list_(
    session: Session, *, autoscaler: str | None = None, live: bool = False
) -> wire.Allocations:
    """Allocations newest first (of one autoscaler, or only live ones), and the autoscalers."""
    query = select(Allocation).order_by(Allocation.id.desc()).limit(MAX_LISTED)
    if autoscaler is not None:
        query = query.where(Allocation.autoscaler == autoscaler)
    if live:
        query = query.where(Allocation.state.in_([s.value for s in wire.LIVE_ALLOCATION_STATES]))
    rows = list(session.scalars(query))
    agents = agents_of(session, rows)
    scalers = select(Autoscaler).order_by(Autoscaler.name)
    if autoscaler is not None:
        scalers = scalers.where(Autoscaler.name == autoscaler)
    return wire.Allocations(
        allocations=[_allocation(row, agents[row.id or 0]) for row in rows],
        autoscalers=[_answer(row) for row in session.scalars(scalers)],
    )


def agents_of(session: Session, rows: list[Allocation]) -> dict[int, list[str]]:
    """Allocation id → 'name (state)' of each agent whose labels name its job. Reads only
    the agents registered since the oldest of `rows` was submitted."""
    found: dict[int, list[str]] = defaultdict(list)
    if not rows:
        return found
    by_job = {(JOB_LABELS.get(r.scheduler, ""), r.job_id): r.id or 0 for r in rows}
    since = min(r.submitted_at for r in rows)
    agents = session.execute(
        select(AGENT.c.name, AGENT.c.state, AGENT.c.labels)
        .where(AGENT.c.registered_at >= since)
        .order_by(AGENT.c.id)
    )
    for name, state, labels in agents:
        for label, value in (labels or {}).items():
            allocation = by_job.get((label, str(value)))
            if allocation is not None:
                found[allocation].append(f"{name} ({state})")
    return found


def _allocation(row: Allocation, agents: list[str]) -> wire.Allocation:
    return wire.Allocation.model_validate(row, from_attributes=True).model_copy(
        update={"agents": agents}
    )


def _answer(row: Autoscaler, *, with_token: bool = False) -> wire.Autoscaler:
    return wire.Autoscaler(
        name=row.name,
        holder=row.holder,
        token=row.token if with_token else None,
        expires_at=row.expires_at,
        updated_at=row.updated_at,
        status=row.status or {},
    )
