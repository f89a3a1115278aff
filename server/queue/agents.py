"""Agents: register, heartbeat (renewing every lease in one statement), seen (claims heard
from), stop, list."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.ownership import not_yours
from farmhand.server.queue import held_leases, leases
from farmhand.server.queue.states import LIVE_RUN
from farmhand.server.tables import AGENT, Agent, Run


def register(
    session: Session, *, body: wire.AgentRegister, token_id: int, now: datetime
) -> wire.Agent:
    """Record a new agent process, with the runners and resources it said it has (None for
    what it did not say: an older agent takes any runner, and its amounts are unknown)."""
    said = body.model_fields_set
    row = Agent(
        **body.model_dump(exclude={"runners", "resources"}),
        runners=body.runners if "runners" in said else None,
        resources=body.resources.model_dump() if body.resources is not None else None,
        token_id=token_id,
        registered_at=now,
        last_heartbeat=now,
    )
    session.add(row)
    session.flush()
    return wire.Agent.model_validate(row)


def heartbeat(
    session: Session,
    *,
    agent_id: int,
    run_ids: list[int],
    now: datetime,
    ttl: float,
    status: wire.AgentStatus | None = None,
    agent_token: int | None = None,
) -> wire.HeartbeatAck:
    """Renew the agent's leases, keep the status it reports, and tell it which of its runs
    to stop. With `agent_token`, only for an agent registered with that token (else 403)."""
    agent = leases.active_agent(session, agent_id, draining_ok=True, agent_token=agent_token)
    agent.last_heartbeat = now
    if status is not None:  # agents that send none keep what they had (None)
        agent.status = status.model_dump(mode="json")
    session.add(agent)
    renewed, expires = held_leases.renew(
        session, agent_id=agent_id, run_ids=run_ids, now=now, ttl=ttl
    )
    cancel: list[int] = []
    live: set[int] = set()
    wanted = sorted(set(run_ids))
    for start in range(0, len(wanted), 5000):
        rows = session.execute(
            select(Run.id, Run.state, Run.agent_id).where(Run.id.in_(wanted[start : start + 5000]))
        )
        for run_id, state, owner in rows:
            if owner != agent_id:
                continue
            if state in LIVE_RUN:
                live.add(run_id)
            elif state == wire.RunState.cancelled.value:
                cancel.append(run_id)
    lost = [i for i in wanted if i not in live and i not in cancel]
    return wire.HeartbeatAck(renewed=renewed, lease_expires_at=expires, cancel=cancel, lost=lost)


def drain(
    session: Session, *, agent_id: int, now: datetime, agent_token: int | None = None
) -> wire.Agent:
    """The agent is shutting down: it gets no new leases but keeps renewing its own."""
    agent = leases.active_agent(session, agent_id, draining_ok=True, agent_token=agent_token)
    agent.state = "draining"
    agent.last_heartbeat = now
    session.add(agent)
    session.flush()
    return wire.Agent.model_validate(agent)


def seen(conn: Connection, *, agent_ids: set[int], now: datetime) -> int:
    """Agents whose claims reached the server were heard from as by a heartbeat: their
    `last_heartbeat` becomes `now` (not for stopped ones). So an agent that holds no lease
    and claims often enough needs no heartbeat to stay live (`AgentRegistered.
    claims_keep_alive`). Returns how many agents it changed."""
    ids, changed = sorted(agent_ids), 0
    for start in range(0, len(ids), 500):
        changed += conn.execute(
            update(AGENT)
            .where(
                AGENT.c.id.in_(ids[start : start + 500]),
                AGENT.c.state != "stopped",
                AGENT.c.last_heartbeat < now,
            )
            .values(last_heartbeat=now)
        ).rowcount
    return changed


def stop(
    session: Session, *, agent_id: int, now: datetime, agent_token: int | None = None
) -> tuple[wire.Agent, int]:
    """Mark the agent stopped and release every lease it still holds (with `agent_token`,
    only an agent registered with that token: else 403 and nothing changes); the agent, and
    how many leases it released."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        leases.active_agent(session, agent_id)  # raises NotFound
    assert agent is not None
    refusal = not_yours(agent_id, agent.name, agent.token_id, agent_token)
    if refusal is not None:
        raise refusal
    released = held_leases.release_agent(
        session, agent_id=agent_id, now=now, reason="agent stopped"
    )
    agent.state = "stopped"
    agent.last_heartbeat = now
    session.add(agent)
    session.flush()
    return wire.Agent.model_validate(agent), released


def list_(session: Session) -> list[wire.Agent]:
    """Every agent, newest first, with how many live runs each holds."""
    running = dict(
        session.execute(
            select(Run.agent_id, func.count())
            .where(literal_in(Run.state, LIVE_RUN))
            .group_by(Run.agent_id)
        ).all()
    )
    rows = session.execute(select(Agent).order_by(Agent.id.desc())).scalars()
    return [
        wire.Agent.model_validate({**row.model_dump(), "running": running.get(row.id, 0)})
        for row in rows
    ]
