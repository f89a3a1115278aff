"""/api/v1/agents, /api/v1/leases and /api/v1/runs: the agent's side of the protocol."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from farmhand.agent import wire
from farmhand.server import agents, leases, runs
from farmhand.server.routes.deps import (
    AgentDep,
    DbDep,
    NowDep,
    SettingsDep,
    SubmitterDep,
    WakeupDep,
)
from farmhand.server.tables import utcnow

router = APIRouter(tags=["agents"])


@router.post(
    "/agents", status_code=201, response_model=wire.AgentRegistered, summary="Register an agent"
)
def register_agent(
    body: wire.AgentRegister, db: DbDep, settings: SettingsDep, now: NowDep, caller: AgentDep
) -> wire.AgentRegistered:
    """Register a worker process; the answer carries its id and the lease TTL."""
    with db.write() as session:
        agent = agents.register(session, body=body, token_id=caller.token_id, now=now)
    return wire.AgentRegistered(agent=agent, lease_ttl=settings.lease_ttl)


@router.get("/agents", response_model=list[wire.Agent], summary="List agents")
def list_agents(db: DbDep, _: SubmitterDep) -> list[wire.Agent]:
    """Every registered agent, newest first."""
    with db.read() as session:
        return agents.list_(session)


@router.post(
    "/agents/{agent_id}/heartbeat",
    response_model=wire.HeartbeatAck,
    summary="Renew every lease the agent holds",
)
def heartbeat(
    agent_id: int, body: wire.Heartbeat, db: DbDep, settings: SettingsDep, now: NowDep, _: AgentDep
) -> wire.HeartbeatAck:
    """One request renews the leases of all listed runs and names the runs to stop."""
    with db.write() as session:
        return agents.heartbeat(
            session, agent_id=agent_id, run_ids=body.run_ids, now=now, ttl=settings.lease_ttl
        )


@router.post(
    "/agents/{agent_id}/drain", response_model=wire.Agent, summary="Stop handing an agent work"
)
def drain_agent(agent_id: int, db: DbDep, now: NowDep, _: AgentDep) -> wire.Agent:
    """The agent is shutting down: its claims get 409 from now on (an in-flight long poll
    included), while its heartbeats still renew the leases it is about to release."""
    with db.write() as session:
        return agents.drain(session, agent_id=agent_id, now=now)


@router.post("/agents/{agent_id}/stop", response_model=wire.Agent, summary="Deregister an agent")
def stop_agent(agent_id: int, db: DbDep, now: NowDep, wakeup: WakeupDep, _: AgentDep) -> wire.Agent:
    """Mark the agent stopped; every lease it still holds is released at once."""
    with db.write() as session:
        agent = agents.stop(session, agent_id=agent_id, now=now)
    wakeup.notify()
    return agent


leases_router = APIRouter(tags=["leases"])


@leases_router.post("/leases", response_model=wire.Leases, summary="Claim records")
async def claim(
    body: wire.ClaimRequest, db: DbDep, settings: SettingsDep, wakeup: WakeupDep, _: AgentDep
) -> wire.Leases:
    """Lease up to `max_records` ready records in one transaction.

    With `wait` > 0 and nothing to claim, the request waits (without holding a worker thread)
    until records are submitted or released, or `wait` seconds pass.
    """
    deadline = time.monotonic() + body.wait

    def attempt() -> list[wire.Lease]:
        with db.write() as session:
            return leases.claim(
                session,
                agent_id=body.agent_id,
                max_records=body.max_records,
                now=utcnow(),
                ttl=settings.lease_ttl,
                campaign_id=body.campaign_id,
            )

    while True:
        granted = await run_in_threadpool(attempt)
        remaining = deadline - time.monotonic()
        if granted or remaining <= 0:
            return wire.Leases(leases=granted)
        # Leases expire on the clock, not on an event: re-check at least every poll interval.
        await wakeup.wait(min(remaining, settings.claim_poll_interval))


runs_router = APIRouter(tags=["runs"])


@runs_router.get("/runs", response_model=wire.Page[wire.Run], summary="List runs")
def list_runs(
    db: DbDep,
    _: SubmitterDep,
    record_id: int | None = None,
    agent_id: int | None = None,
    state: wire.RunState | None = None,
    after: int | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> wire.Page[wire.Run]:
    """Runs in id order, filtered; follow `next` for the following page."""
    with db.read() as session:
        return runs.list_(
            session, after=after, limit=limit, record_id=record_id, agent_id=agent_id, state=state
        )


@runs_router.post("/runs/{run_id}/start", response_model=wire.RunAck, summary="Start a run")
def start_run(run_id: int, body: wire.RunStart, db: DbDep, now: NowDep, _: AgentDep) -> wire.RunAck:
    """The agent has staged the run and started its command (fenced by the lease token)."""
    with db.write() as session:
        return runs.start(session, run_id=run_id, body=body, now=now)


@runs_router.post(
    "/runs/{run_id}/complete", response_model=wire.RunAck, summary="Report a successful run"
)
def complete_run(
    run_id: int, body: wire.RunComplete, db: DbDep, now: NowDep, _: AgentDep
) -> wire.RunAck:
    """The record becomes done with the run's result; a repeat gets the same answer."""
    with db.write() as session:
        return runs.complete(session, run_id=run_id, body=body, now=now)


@runs_router.post("/runs/{run_id}/fail", response_model=wire.RunAck, summary="Report a failed run")
def fail_run(
    run_id: int, body: wire.RunFail, db: DbDep, now: NowDep, wakeup: WakeupDep, _: AgentDep
) -> wire.RunAck:
    """The attempt failed; the record is re-queued while attempts remain, else failed."""
    with db.write() as session:
        ack = runs.fail(session, run_id=run_id, body=body, now=now)
    if ack.record_state == wire.RecordState.ready:
        wakeup.notify()
    return ack


@runs_router.post(
    "/runs/{run_id}/release", response_model=wire.RunAck, summary="Give a record back"
)
def release_run(
    run_id: int, body: wire.RunRelease, db: DbDep, now: NowDep, wakeup: WakeupDep, _: AgentDep
) -> wire.RunAck:
    """The record is ready again at once, without spending an attempt."""
    with db.write() as session:
        ack = runs.release(session, run_id=run_id, body=body, now=now)
    wakeup.notify()
    return ack
