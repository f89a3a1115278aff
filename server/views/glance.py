"""The overview's agents at a glance: slots busy over the last hour, and the newest error.

Bounded reads by primary key, like the overview's recent failures. Slots busy are averaged
over each of `BUCKETS` buckets of the last hour: a run holds a slot from its start (its
claim, until it starts) to its end (or now), so a bucket's value is the seconds its runs
overlap it over its width. One GROUP BY over the runs among the last `RUN_WINDOW` sums them
all at once (an overlap per bucket against bound times; `_overlap` writes it per dialect;
no row is sent to Python); a second adds the runs the agents hold leases for now
(`ix_record_agent`) from before the window. When the window does not reach back an hour,
the buckets that begin before its oldest claim are unknown (None), not idle.
The newest failed run of each agent in the same window is its last error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import extract, func, literal, or_, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.queue.states import LEASED
from farmhand.server.tables import REC, RUN, UTCDateTime

HOUR = 3600.0
BUCKETS = 20
RUN_WINDOW = 20_000


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
    window = RUN.c.id > newest - RUN_WINDOW
    width = HOUR / BUCKETS
    bounds = [since + timedelta(seconds=width * i) for i in range(BUCKETS + 1)]
    sqlite = session.get_bind().dialect.name == "sqlite"
    begin = _seconds(func.coalesce(RUN.c.started_at, RUN.c.claimed_at), since, sqlite)
    end = _seconds(func.coalesce(RUN.c.ended_at, literal(now, UTCDateTime)), since, sqlite)
    # `agent_id + 0`: the window is read in primary-key order; with ix_run_agent the
    # planners would visit it once per agent.
    agent = (RUN.c.agent_id + 0).label("agent")
    ended_in_hour = or_(RUN.c.ended_at.is_(None), RUN.c.ended_at >= since)
    held = RUN.c.id.in_(
        select(REC.c.run_id).where(REC.c.agent_id.in_(agent_ids), literal_in(REC.c.state, LEASED))
    )
    for where in ([window, ended_in_hour], [held, RUN.c.id <= newest - RUN_WINDOW]):
        # Each run's start and end in seconds since the hour began, once; then per bucket
        # the seconds they overlap it, in plain arithmetic.
        runs = select(agent, begin.label("b"), end.label("e")).where(*where).subquery()
        sums = [
            func.sum(_overlap(runs.c.b, runs.c.e, width * i, width * (i + 1), sqlite))
            for i in range(BUCKETS)
        ]
        rows = session.execute(select(runs.c.agent, *sums).group_by(runs.c.agent))
        for agent_id, *busy in rows:
            if agent_id in out:
                look = out[agent_id]
                look.busy = [
                    (b or 0.0) + float(n or 0) for b, n in zip(look.busy, busy, strict=True)
                ]
    known_from = _known_from(session, newest, since)
    for look in out.values():
        look.busy = [
            None if lo < known_from else round((b or 0.0) / width, 3)
            for lo, b in zip(bounds, look.busy, strict=False)
        ]
    _errors(session, out, window)
    return out


def _seconds(moment: Any, since: datetime, sqlite: bool) -> Any:
    """SQL: the seconds from `since` to `moment`."""
    start = literal(since, UTCDateTime)
    if sqlite:  # julianday counts days
        return (func.julianday(moment) - func.julianday(start)) * 86400
    return extract("epoch", moment - start)


def _overlap(begin: Any, end: Any, lo: float, hi: float, sqlite: bool) -> Any:
    """SQL: the seconds [begin, end) and [lo, hi) have in common (0 when none)."""
    low, high = literal(lo), literal(hi)
    if sqlite:  # min and max of two values
        return func.max(0, func.min(end, high) - func.max(begin, low))
    return func.greatest(0, func.least(end, high) - func.greatest(begin, low))


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
