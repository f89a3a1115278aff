"""The overview's agents at a glance: slots busy over the last hour, and the newest error.

Bounded reads by primary key, like the overview's recent failures. Slots busy are counted
at `BUCKETS` moments of the last hour (each bucket's end; the last is now): a run holds a
slot from its start (its claim, until it starts) to its end. One GROUP BY over the runs
among the last `RUN_WINDOW` counts them all at once (a CASE per moment, compared with bound
times: the same SQL on both databases, no row sent to Python); a second adds the runs the
agents hold leases for now (`ix_record_agent`) from before the window. When the window does
not reach back an hour, the moments before its oldest claim are unknown (None), not idle.
The newest failed run of each agent in the same window is its last error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.queue.states import LEASED
from farmhand.server.tables import REC, RUN, UTCDateTime

HOUR = 3600.0
BUCKETS = 30
RUN_WINDOW = 20_000


@dataclass
class Glance:
    """One agent's last hour: slots busy at each bucket's end (oldest first; None: before
    what the window read), and its newest failed run."""

    busy: list[float | None] = field(default_factory=lambda: [0.0] * BUCKETS)
    error: str | None = None
    error_at: datetime | None = None
    error_record: int | None = None


def of_agents(session: Session, agent_ids: list[int], *, now: datetime) -> dict[int, Glance]:
    """Busy slots over the last hour and the newest error of each agent in `agent_ids`."""
    out = {a: Glance() for a in agent_ids}
    newest = session.execute(select(func.max(RUN.c.id))).scalar()
    if newest is None or not agent_ids:
        return out
    since = now - timedelta(seconds=HOUR)
    moments = [since + timedelta(seconds=HOUR * (i + 1) / BUCKETS) for i in range(BUCKETS)]
    window = RUN.c.id > newest - RUN_WINDOW
    begin = func.coalesce(RUN.c.started_at, RUN.c.claimed_at)
    counts = [
        func.sum(
            case(
                (and_(begin <= at, or_(RUN.c.ended_at.is_(None), RUN.c.ended_at > at)), 1),
                else_=0,
            )
        )
        for at in (literal(m, UTCDateTime) for m in moments)
    ]
    # `agent_id + 0`: the window is read in primary-key order; with ix_run_agent the
    # planners would visit it once per agent.
    agent = (RUN.c.agent_id + 0).label("agent")
    ended_in_hour = or_(RUN.c.ended_at.is_(None), RUN.c.ended_at >= since)
    held = RUN.c.id.in_(
        select(REC.c.run_id).where(REC.c.agent_id.in_(agent_ids), literal_in(REC.c.state, LEASED))
    )
    for where in ([window, ended_in_hour], [held, RUN.c.id <= newest - RUN_WINDOW]):
        rows = session.execute(select(agent, *counts).where(*where).group_by(agent))
        for agent_id, *busy in rows:
            if agent_id in out:
                look = out[agent_id]
                look.busy = [(b or 0.0) + (n or 0) for b, n in zip(look.busy, busy, strict=True)]
    known_from = _known_from(session, newest, since)
    for look in out.values():
        look.busy = [None if m < known_from else b for m, b in zip(moments, look.busy, strict=True)]
    _errors(session, out, window)
    return out


def _known_from(session: Session, newest: int, since: datetime) -> datetime:
    """The oldest moment the window of runs speaks for: its oldest claim when the runs go
    back further than the window, else the start of the hour."""
    before = session.execute(select(RUN.c.id).where(RUN.c.id <= newest - RUN_WINDOW).limit(1))
    if before.first() is None:  # the window holds every run there is
        return since
    oldest = session.execute(
        select(RUN.c.claimed_at).where(RUN.c.id > newest - RUN_WINDOW).order_by(RUN.c.id).limit(1)
    ).scalar()
    return max(since, oldest) if oldest is not None else since


def _errors(session: Session, out: dict[int, Glance], window: Any) -> None:
    """Each agent's newest failed run in the window."""
    last = (
        select(func.max(RUN.c.id))
        .where(window, RUN.c.state == wire.RunState.failed.value)
        .group_by(RUN.c.agent_id + 0)
    )
    rows = session.execute(
        select(RUN.c.agent_id, RUN.c.error, RUN.c.ended_at, RUN.c.record_id).where(
            RUN.c.id.in_(last)
        )
    )
    for agent_id, error, ended_at, record_id in rows:
        if agent_id in out:
            look = out[agent_id]
            look.error, look.error_at, look.error_record = error, ended_at, record_id
