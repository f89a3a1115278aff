"""The overview's agents at a glance: slots busy over the last hour, and the newest error.

Bounded reads by primary key, like the overview's recent failures: the runs among the last
`RUN_WINDOW` (their claim, start and end times) plus the runs the agents hold leases for now
(`ix_record_agent`), however old; and the newest failed run of each agent among the last
`FAILURE_WINDOW` runs. Busy slots are averaged per bucket in Python from those intervals
(a run occupies a slot from its start, or its claim until it starts, to its end or now).
When the window does not reach back an hour, the buckets before its oldest claim are
unknown (None), not idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.queue.states import LEASED
from farmhand.server.tables import REC, RUN

HOUR = 3600.0
BUCKETS = 30
RUN_WINDOW = 20_000
FAILURE_WINDOW = 50_000


@dataclass
class Glance:
    """One agent's last hour: average slots busy per bucket (oldest first; None: before
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
    columns = (RUN.c.id, RUN.c.agent_id, RUN.c.claimed_at, RUN.c.started_at, RUN.c.ended_at)
    recent = session.execute(
        select(*columns).where(
            RUN.c.id > newest - RUN_WINDOW,
            RUN.c.agent_id.in_(agent_ids),
            or_(RUN.c.ended_at.is_(None), RUN.c.ended_at >= since),
        )
    ).all()
    held = session.execute(
        select(*columns).where(
            RUN.c.id.in_(
                select(REC.c.run_id).where(
                    REC.c.agent_id.in_(agent_ids), literal_in(REC.c.state, LEASED)
                )
            )
        )
    ).all()
    known_from = since
    if newest > RUN_WINDOW:  # runs before the window were not read
        oldest = session.execute(
            select(RUN.c.claimed_at)
            .where(RUN.c.id > newest - RUN_WINDOW)
            .order_by(RUN.c.id)
            .limit(1)
        ).scalar()
        if oldest is not None and oldest > since:
            known_from = oldest
    width = HOUR / BUCKETS
    seen = set()
    for row in [*recent, *held]:
        if row.id in seen or row.agent_id not in out:
            continue
        seen.add(row.id)
        begin = row.started_at or row.claimed_at
        end = row.ended_at or now
        _add(
            out[row.agent_id].busy,
            (begin - since).total_seconds(),
            (end - since).total_seconds(),
            width,
        )
    unknown = math.floor((known_from - since).total_seconds() / width)
    for glance in out.values():
        glance.busy = [None if i < unknown else b / width for i, b in enumerate(glance.busy)]
    _errors(session, out, newest)
    return out


def _add(busy: list[float | None], begin: float, end: float, width: float) -> None:
    """Add the seconds of [begin, end) (seconds since the hour began) to each bucket."""
    begin, end = max(begin, 0.0), min(end, width * len(busy))
    i = math.floor(begin / width)
    while begin < end and i < len(busy):
        upto = min(end, (i + 1) * width)
        busy[i] = (busy[i] or 0.0) + (upto - begin)
        begin, i = upto, i + 1


def _errors(session: Session, out: dict[int, Glance], newest: int) -> None:
    """Each agent's newest failed run among the last `FAILURE_WINDOW` runs."""
    last = (
        select(func.max(RUN.c.id))
        .where(
            RUN.c.id > newest - FAILURE_WINDOW,
            RUN.c.state == wire.RunState.failed.value,
            RUN.c.agent_id.in_(list(out)),
        )
        .group_by(RUN.c.agent_id)
    )
    rows = session.execute(
        select(RUN.c.agent_id, RUN.c.error, RUN.c.ended_at, RUN.c.record_id).where(
            RUN.c.id.in_(last)
        )
    )
    for agent_id, error, ended_at, record_id in rows:
        glance = out[agent_id]
        glance.error, glance.error_at, glance.error_record = error, ended_at, record_id
