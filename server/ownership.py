"""What an agent token may act as and read: the agents it registered, their runs, and the
snapshots their live leases need. Admins act as any agent (`agent_token` None).

Every check here rides on a statement the caller runs anyway (the claim's gate, the run
reports' lock) or on a request that is not on the hot path (snapshot downloads).
"""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand.server.db import connection_of, literal_in
from farmhand.server.errors import Forbidden
from farmhand.server.queue.states import LIVE_RUN
from farmhand.server.tables import (
    AGENT,
    RUN,
    Checkpoint,
    RecordInput,
    RecordParent,
    RecordResult,
)

#: The token a run's agent registered with, as a column of a statement reading `run`.
RUN_OWNER = (
    select(AGENT.c.token_id)
    .where(AGENT.c.id == RUN.c.agent_id)
    .correlate(RUN)
    .scalar_subquery()
    .label("agent_token")
)


def not_yours(
    agent_id: int, name: str, owner: int | None, agent_token: int | None
) -> Forbidden | None:
    """Why a caller may not act as this agent (None when it may): an agent token acts only
    as the agents registered with it; `agent_token` None (an admin) acts as any."""
    if agent_token is None or owner == agent_token:
        return None
    return Forbidden(
        f"agent {agent_id} ({name}) was registered with another token; an agent token acts "
        "only as the agents it registered itself (register this process with its own token)"
    )


def not_your_run(run_id: int, owner: int | None, agent_token: int | None) -> Forbidden | None:
    """Why a caller may not report on, or upload for, run `run_id` (None when it may): the
    run must belong to an agent registered with `agent_token` (None: an admin, any run)."""
    if agent_token is None or owner == agent_token:
        return None
    return Forbidden(
        f"run {run_id} belongs to an agent registered with another token; an agent token "
        "reports only on the runs of its own agents"
    )


def readable(tx: Session | Connection, sha256: str, *, agent_token: int) -> bool:
    """Whether an agent token may read snapshot `sha256`: an input of a record one of its
    agents holds a live lease on, the archive of such a record's parent's result, or one of
    the record's checkpoints — exactly what its leases name, nothing else."""
    mine = select(AGENT.c.id).where(AGENT.c.token_id == agent_token).correlate(None)
    held = (
        select(RUN.c.record_id)
        .where(RUN.c.agent_id.in_(mine), literal_in(RUN.c.state, LIVE_RUN))
        .correlate(None)
    )
    parent_run = RUN.alias("parent_run")
    inputs = RecordInput.__table__
    checkpoints = Checkpoint.__table__
    edge = RecordParent.__table__
    result = RecordResult.__table__
    as_input = exists().where(inputs.c.sha256 == sha256, inputs.c.record_id.in_(held))
    as_checkpoint = exists().where(
        checkpoints.c.sha256 == sha256, checkpoints.c.record_id.in_(held)
    )
    as_parent_archive = exists().where(
        parent_run.c.archive == sha256,
        parent_run.c.id == result.c.run_id,
        result.c.record_id == edge.c.parent_id,
        edge.c.record_id.in_(held),
    )
    query = select(or_(as_input, as_checkpoint, as_parent_archive))
    return bool(connection_of(tx).execute(query).scalar())


def check_readable(tx: Session | Connection, sha256: str, *, agent_token: int | None) -> None:
    """Forbidden unless snapshot `sha256` is `readable` by `agent_token` (None: a submitter
    or admin, who read every snapshot). Refused alike whether the snapshot exists or not."""
    if agent_token is None or readable(tx, sha256, agent_token=agent_token):
        return
    raise Forbidden(
        f"snapshot {sha256} is not an input, parent archive or checkpoint of a record this "
        "agent token holds a live lease on; agent tokens read only what their leases need "
        "(read it with a submitter token)"
    )
