"""/api/v1/agents: register, heartbeat, drain and stop agents."""

from __future__ import annotations

from fastapi import APIRouter, Response

from farmhand import wire
from farmhand.server.queue import agents
from farmhand.server.routes.deps import (
    AgentDep,
    DbDep,
    NowDep,
    SettingsDep,
    SubmitterDep,
    WakeupDep,
    json_response,
)
from farmhand.server.routes.openapi import AGENT, HEARTBEAT, errors
from farmhand.server.views import stuck

router = APIRouter(tags=["agents"])


@router.post(
    "/agents",
    status_code=201,
    response_model=wire.AgentRegistered,
    summary="Register an agent",
    responses=errors(413, 422),
    openapi_extra=AGENT,
)
def register_agent(
    body: wire.AgentRegister, db: DbDep, settings: SettingsDep, now: NowDep, caller: AgentDep
) -> Response:
    """Register a worker process; the answer carries its id and the lease TTL."""
    with db.write() as session:
        agent = agents.register(session, body=body, token_id=caller.token_id, now=now)
        answer = wire.AgentRegistered(
            agent=agent, lease_ttl=settings.lease_ttl, claims_keep_alive=True
        )
        return json_response(answer, status_code=201)


@router.get("/agents", response_model=list[wire.Agent], summary="List agents", responses=errors())
def list_agents(db: DbDep, _: SubmitterDep) -> list[wire.Agent]:
    """Every registered agent, newest first."""
    with db.read() as session:
        return agents.list_(session)


@router.post(
    "/agents/{agent_id}/heartbeat",
    response_model=wire.HeartbeatAck,
    summary="Renew every lease the agent holds",
    responses=errors(404, 409, 413, 422),
    openapi_extra=HEARTBEAT,
)
def heartbeat(
    agent_id: wire.Id,
    body: wire.Heartbeat,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    caller: AgentDep,
) -> Response:
    """One request renews the leases of all listed runs, stores the agent's status and names
    the runs to stop. An agent token heartbeats only for the agents it registered (403)."""
    with db.write() as session:
        ack = agents.heartbeat(
            session,
            agent_id=agent_id,
            run_ids=body.run_ids,
            now=now,
            ttl=settings.lease_ttl,
            status=body.status,
            agent_token=caller.agent_token,
        )
        return json_response(ack)


@router.post(
    "/agents/{agent_id}/drain",
    response_model=wire.Agent,
    summary="Stop handing an agent work",
    responses=errors(404, 409, 422),
)
def drain_agent(agent_id: wire.Id, db: DbDep, now: NowDep, caller: AgentDep) -> Response:
    """The agent is shutting down: its claims get 409 from now on (an in-flight long poll
    included), while its heartbeats still renew the leases it is about to release. An agent
    token drains only the agents it registered (403); an admin token any."""
    with db.write() as session:
        ack = agents.drain(session, agent_id=agent_id, now=now, agent_token=caller.agent_token)
        return json_response(ack)


@router.post(
    "/agents/{agent_id}/stop",
    response_model=wire.Agent,
    summary="Deregister an agent",
    responses=errors(404, 422),
)
def stop_agent(
    agent_id: wire.Id, db: DbDep, now: NowDep, wakeup: WakeupDep, caller: AgentDep
) -> Response:
    """Mark the agent stopped; every lease it still holds is released at once. An agent
    token stops only the agents it registered (403); an admin token any."""
    with db.write() as session:
        agent, released = agents.stop(
            session, agent_id=agent_id, now=now, agent_token=caller.agent_token
        )
        response = json_response(agent)
    if released:
        wakeup.notify(released)
    return response


@router.get(
    "/status",
    response_model=wire.FarmStatus,
    summary="Why ready records are not moving",
    responses=errors(),
)
def farm_status(db: DbDep, settings: SettingsDep, now: NowDep, _: SubmitterDep) -> wire.FarmStatus:
    """Ready records, agents counted as live, draining or stale, and the ready records no live
    agent can take, grouped by reason: a runner no live agent offers, more cores, GPUs or
    memory than the largest live agent offering the runner holds, or no live agent at all.
    `farmhand status` prints the `stuck` messages."""
    with db.read() as session:
        return stuck.farm(session, now=now, stale_after=settings.lease_ttl)
