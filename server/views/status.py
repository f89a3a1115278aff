"""Read-only views of the farm for the status pages and `/metrics`: campaign progress,
agents and recent failures (a campaign's pages of records: `browse`).

Each function runs inside the caller's read transaction and reads through an index: counts by
state come from one GROUP BY over `ix_record_campaign_state`, leases per agent from the
partial live-lease index, failures from the newest runs by primary key. That keeps the
overview well under 300 ms at a million records (`make bench` measures it).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import campaigns as campaign_data
from farmhand.server.db import literal_in
from farmhand.server.queue.states import LEASED
from farmhand.server.tables import AGENT, CAMPAIGN, REC, RUN, Agent, Run

S = wire.RecordState
#: Bar order: finished states first, then work in flight, then work not started.
BAR_ORDER = (S.done, S.failed, S.cancelled, S.orphaned, S.running, S.claimed, S.ready, S.waiting)
REMAINING = (S.waiting, S.ready, S.claimed, S.running)
WORKED = (S.done, S.failed)  # what throughput counts: cancelling is not work done
#: How far back (in runs) the overview looks for failures: a bounded read by primary key.
FAILURE_WINDOW = 50_000


@dataclass
class Segment:
    """One state's share of a progress bar, in percent."""

    state: str
    count: int
    start: float
    width: float


@dataclass
class Progress:
    """A campaign's counts, bar segments, throughput (records/s) and ETA (seconds)."""

    campaign: wire.Campaign
    total: int
    remaining: int
    segments: list[Segment]
    rate: float | None = None
    rate_basis: str = ""
    eta: float | None = None
    #: The unit every rate on the page is shown in (`rate_unit`), the same for all rows.
    unit: str = "s"

    @property
    def eta_basis(self) -> str:
        """Which rate the ETA assumes: `the last 5 min's rate`, `the rate since start`."""
        if self.rate_basis.startswith("last "):
            return f"the {self.rate_basis}'s rate"
        return f"the rate {self.rate_basis}"

    @property
    def percent_finished(self) -> float:
        """Share of records in a final state."""
        return 100.0 * (self.total - self.remaining) / self.total if self.total else 0.0


class Throughput:
    """Records worked (done + failed) per campaign, sampled over time, as a rate.

    Samples come from the counts the overview reads anyway, so the rate costs no query.
    Each server process keeps its own samples; they all count the same database.
    """

    def __init__(self, window: float = 300.0, spacing: float = 5.0, min_span: float = 5.0):
        self.window, self.spacing, self.min_span = window, spacing, min_span
        self._samples: deque[tuple[float, dict[int, int]]] = deque()
        self._lock = threading.Lock()

    def observe(self, worked: dict[int, int], now: float | None = None) -> None:
        """Remember the counts (at most one sample per `spacing` seconds)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._samples or now - self._samples[-1][0] >= self.spacing:
                self._samples.append((now, dict(worked)))
            # Keep one sample at or before the window's start, so the span covers the window.
            while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
                self._samples.popleft()

    def rate(self, campaign_id: int, worked: int, now: float | None = None) -> tuple[float, float]:
        """(records/s, seconds measured) against the oldest sample; (0, 0) without one."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._samples:
                return 0.0, 0.0
            then, counts = self._samples[0]
        span = now - then
        if span < self.min_span:
            return 0.0, span
        return max(0, worked - counts.get(campaign_id, 0)) / span, span


def campaigns(session: Session, *, archived: bool = False) -> list[wire.Campaign]:
    """Every campaign (but the archived ones, unless `archived`) with its counts by state
    (one GROUP BY over the state index)."""
    return campaign_data.list_(session, archived=archived)


def archived_count(session: Session) -> int:
    """How many campaigns are archived (the overview says so, with a link to show them)."""
    return session.execute(
        select(func.count()).where(CAMPAIGN.c.archived_at.is_not(None))
    ).scalar_one()


def _run_time(campaign: wire.Campaign) -> float | None:
    """Seconds from a finished campaign's first claim to its end (None: not both known)."""
    if campaign.started_at is None or campaign.finished_at is None:
        return None
    return max((campaign.finished_at - campaign.started_at).total_seconds(), 1.0)


def progress(rows: list[wire.Campaign], *, throughput: Throughput, now: datetime) -> list[Progress]:
    """Bars, throughput and ETA for each campaign; feeds `throughput` with these counts."""
    worked = {c.id: sum(c.counts.get(s, 0) for s in WORKED) for c in rows}
    throughput.observe(worked)
    out = []
    for campaign in rows:
        total = sum(campaign.counts.values())
        segments, start = [], 0.0
        for state in BAR_ORDER:
            n = campaign.counts.get(state, 0)
            if n:
                width = 100.0 * n / total
                segments.append(Segment(state.value, n, start, width))
                start += width
        remaining = sum(campaign.counts.get(s, 0) for s in REMAINING)
        item = Progress(campaign, total, remaining, segments)
        rate, span = throughput.rate(campaign.id, worked[campaign.id])
        ran = _run_time(campaign)
        if not remaining and ran is not None:  # finished: its rate over its whole run
            item.rate, item.rate_basis = worked[campaign.id] / ran, "over its run"
        elif span >= throughput.min_span:
            item.rate, item.rate_basis = rate, f"last {_span(span)}"
        elif campaign.started_at is not None:
            elapsed = (now - campaign.started_at).total_seconds()
            if elapsed >= throughput.min_span:  # a rate over a blink is noise
                item.rate, item.rate_basis = worked[campaign.id] / elapsed, "since start"
        if item.rate and remaining:
            item.eta = remaining / item.rate
        out.append(item)
    unit = rate_unit([item.rate for item in out])
    for item in out:
        item.unit = unit
    return out


#: Throughput units and their seconds, in the order a page tries them.
UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def rate_unit(rates: list[float | None]) -> str:
    """One unit for all the rates of a page, chosen by the fastest: records per second when
    it reaches 1/s, else per minute when it reaches 1/min, else per hour."""
    fastest = max((r for r in rates if r), default=0.0)
    for unit, seconds in UNITS.items():
        if fastest * seconds >= 1:
            return unit
    return "h"


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class AgentStatus:
    """An agent that has not stopped, with its live leases and warning flags."""

    agent: wire.Agent
    running: int
    heartbeat_age: float
    flags: list[str] = field(default_factory=list)


def agents(
    session: Session, *, now: datetime, stale_after: float, limit: int = 200
) -> tuple[list[AgentStatus], int]:
    """Agents that have not stopped, newest first (at most `limit`), and how many stopped."""
    # A record names an agent only while leased, so `agent_id IS NOT NULL` reads just those
    # rows of ix_record_agent; grouping alone would make SQLite walk the whole index.
    leased = dict(
        session.execute(
            select(REC.c.agent_id, func.count())
            .where(REC.c.agent_id.is_not(None), literal_in(REC.c.state, LEASED))
            .group_by(REC.c.agent_id)
        ).all()
    )
    rows = session.execute(
        select(Agent).where(Agent.state != "stopped").order_by(Agent.id.desc()).limit(limit)
    ).scalars()
    out = []
    for row in rows:
        age = (now - row.last_heartbeat).total_seconds()
        flags = [row.state] if row.state != "active" else []
        if age > stale_after:
            flags.append("stale")
        agent = wire.Agent.model_validate({**row.model_dump(), "running": leased.get(row.id, 0)})
        out.append(AgentStatus(agent, leased.get(row.id, 0), age, flags))
    stopped = session.execute(
        select(func.count()).select_from(AGENT).where(AGENT.c.state == "stopped")
    ).scalar_one()
    return out, stopped


def agent_totals(session: Session, *, now: datetime, stale_after: float) -> dict[str, int]:
    """Agents that have not stopped, counted as live, draining or stale."""
    cutoff = now - timedelta(seconds=stale_after)
    label = case(
        (AGENT.c.state == "draining", "draining"),
        (AGENT.c.last_heartbeat < cutoff, "stale"),
        else_="live",
    )
    totals = {"live": 0, "draining": 0, "stale": 0}
    rows = session.execute(
        select(label, func.count()).where(AGENT.c.state != "stopped").group_by(label)
    )
    totals.update(dict(rows.all()))
    return totals


@dataclass
class Failure:
    """A failed attempt, with the record it belongs to."""

    run: wire.Run
    key: str
    campaign_id: int
    record_state: str


def recent_failures(session: Session, *, limit: int = 10) -> list[Failure]:
    """The newest failed attempts among the last `FAILURE_WINDOW` runs, newest first."""
    newest = session.execute(select(func.max(RUN.c.id))).scalar()
    if newest is None:
        return []
    rows = session.execute(
        select(Run, REC.c.key, REC.c.campaign_id, REC.c.state)
        .join(REC, REC.c.id == Run.record_id)
        .where(Run.state == wire.RunState.failed.value, Run.id > newest - FAILURE_WINDOW)
        .order_by(Run.id.desc())
        .limit(limit)
    )
    return [
        Failure(wire.Run.model_validate(run), key, campaign_id, state)
        for run, key, campaign_id, state in rows
    ]
