"""/api/v1/leases: the claim endpoint, with its long poll."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import APIRouter, Response
from sqlalchemy.engine import Connection

from farmhand import wire
from farmhand.server.queue import claim as claims
from farmhand.server.routes.deps import AgentCallDep, json_response
from farmhand.server.routes.openapi import CLAIM, errors
from farmhand.server.serving import metrics
from farmhand.server.tables import utcnow

router = APIRouter(tags=["leases"])


@router.post(
    "/leases",
    response_model=wire.Leases,
    summary="Claim records",
    responses=errors(404, 409, 413, 422),
    openapi_extra=CLAIM,
)
async def claim(body: wire.ClaimRequest, call: AgentCallDep) -> Response:
    """Lease up to `max_records` ready records in one transaction. An agent token claims only
    as an agent it registered (403 otherwise); an admin token as any.

    With `wait` > 0 and nothing to claim, the request waits (without holding a worker thread)
    until records are submitted or released, or `wait` seconds pass. The claim itself runs
    on the event loop when it can (`Database.run_write`). While the server knows the queue
    holds nothing claimable (`Wakeup.quiet`), an attempt only checks the agent, once.
    """
    deadline = time.monotonic() + body.wait
    db, wakeup, caller = call.db, call.wakeup, call.caller

    def attempt(conn: Connection) -> _Granted:
        started = time.perf_counter()
        granted = claims.claim(
            conn,
            agent_id=body.agent_id,
            max_records=body.max_records,
            clock=utcnow,
            ttl=call.settings.lease_ttl,
            campaign_ids=_campaigns(body),
            datasets=body.datasets,
            runners=body.runners,
            free=body.free,
            walltime_left=body.walltime_left,
            agent_token=caller.agent_token,
        )
        metrics.claim_attempted(time.perf_counter() - started, len(granted))
        # Serialised before the commit: an answer that cannot be built leases nothing.
        return _Granted(len(granted), json_response(wire.Leases(leases=granted)))

    async def admit() -> None:
        now, who = utcnow(), {"agent_id": body.agent_id, "agent_token": caller.agent_token}
        found = None
        if call.reader is not None:  # PostgreSQL: on the event loop, unless it is busy
            params = claims.gate_params(body.agent_id, now)
            found = await call.reader.fetch(claims.gate_statement("postgresql"), params)
        if found is None:
            await db.run_read(lambda conn: claims.admit(conn, now=now, **who))
        else:
            claims.judge(found, **who)

    admitted = False
    while True:
        seen = wakeup.generation  # a wakeup while the attempt runs must not be missed
        if wakeup.quiet:
            # Nothing is claimable (the queue watch's last look, no wakeup since): no write
            # transaction, only the agent's refusals (unknown, stopped, not yours) once.
            if not admitted:
                await admit()
            granted = _NOTHING
        else:
            granted = await db.run_write(attempt, items=body.max_records)
        if not admitted:  # heard from: as good as a heartbeat (app.py keeps it live)
            call.claimers.add(body.agent_id)
        admitted = True
        remaining = deadline - time.monotonic()
        if granted or remaining <= WAIT_SLACK:
            return granted.answer or json_response(wire.Leases(leases=[]))
        # Woken (about one claim per record) by whatever makes records ready here or on
        # another replica, or (every claim) by the queue watch (app.py) when a lease ran
        # out, work came without a wakeup, or a woken claim did not fit what was left.
        await wakeup.wait(remaining, since=seen)


#: Seconds of a long poll not waited for: the event loop's timers (uvloop's clock counts
#: whole milliseconds) may end a wait that much before `time.monotonic()` reaches its
#: deadline, and a claim run on the event loop is quick enough to find time left and run a
#: second, pointless attempt.
WAIT_SLACK = 0.005


@dataclass(frozen=True)
class _Granted:
    """What one claim attempt leased, and its answer, built inside the claim's transaction."""

    count: int
    answer: Response | None

    def __len__(self) -> int:
        return self.count


#: An attempt skipped while the queue is quiet (its answer is built when it is sent).
_NOTHING = _Granted(0, None)


def _campaigns(body: wire.ClaimRequest) -> list[int] | None:
    """`campaign_id` and `campaign_ids` together; None = every campaign."""
    if body.campaign_id is None and body.campaign_ids is None:
        return None
    return sorted({*(body.campaign_ids or []), *([body.campaign_id] if body.campaign_id else [])})
