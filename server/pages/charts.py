"""The pages' plots as SVG drawn on the server (templates/_charts.html draws what this
computes): no script, no library, nothing for the strict CSP to refuse, and every number is
in the HTML, where a test can read it.

Coordinates are in each plot's own viewBox; the browser scales it to the page's width.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from farmhand import wire
from farmhand.server.views import charts, glance
from farmhand.server.views.status import AgentStatus

W, H = 640, 150  # a full-width plot
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 8, 20
SPARK_W, SPARK_H = 160, 32  # the overview's small ones
#: The overview draws the timelines of this many campaigns (the first in its list).
OVERVIEW_PLOTS = 50
OVERVIEW_BUCKETS = 40
#: Seconds the overview keeps the agents' sparklines and last errors, and a running
#: campaign's small timeline (the campaign page: `charts.RUNNING_KEEP`). Each costs up to
#: 100-150 ms at a million records; the sparklines' buckets are three minutes wide.
OVERVIEW_KEEP = 15


@dataclass
class Bar:
    """One bucket or bin: where it is drawn, its values, and its tooltip."""

    x: float
    y: float
    w: float
    h: float
    title: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plot:
    """Polylines (name -> "x,y x,y …"), bars, and the axis labels of one plot."""

    lines: dict[str, str] = field(default_factory=dict)
    bars: list[Bar] = field(default_factory=list)
    top: str = ""
    left: str = ""
    right: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def _x(i: float, n: int, left: float = LEFT, width: float = W - LEFT - RIGHT) -> float:
    return round(left + width * i / max(n, 1), 2)


def _y(v: float, top_value: float, top: float = TOP, height: float = H - TOP - BOTTOM) -> float:
    return round(top + height * (1 - v / top_value if top_value else 1), 2)


def _clock(moment: datetime, width: int) -> str:
    return moment.strftime("%Y-%m-%d %H:%M" if width >= 60 else "%Y-%m-%d %H:%M:%S")


def timeline_plots(line: wire.Timeline) -> tuple[Plot, Plot] | None:
    """Cumulative done and failed records, and throughput per bucket (None: nothing ended)."""
    points = line.points
    if not points or line.start is None:
        return None
    n, width = len(points), line.bucket_seconds
    most = max(points[-1].done, points[-1].failed, 1)
    lines = {}
    for name in ("done", "failed"):
        coords = [(_x(0, n), _y(0, most))]
        coords += [(_x(i + 1, n), _y(getattr(p, name), most)) for i, p in enumerate(points)]
        lines[name] = " ".join(f"{x},{y}" for x, y in coords)
    ended = Plot(lines=lines, top=f"{most:,}", left=_clock(line.start, width))
    ended.right = f"every {_span(width)}"
    ended.data = {"done": points[-1].done, "failed": points[-1].failed, "points": n}
    fastest = max(p.throughput for p in points) or 1.0
    rate = Plot(top=_rate(fastest), left=ended.left, right=ended.right)
    rate.data = {"ended": sum(p.ended for p in points)}
    for i, p in enumerate(points):
        x0, x1 = _x(i, n), _x(i + 1, n)
        tip = (
            f"{_clock(p.t, width)} +{_span(width)}: {p.ended:,} ended "
            f"({_rate(p.throughput)}); {p.done:,} done, {p.failed:,} failed in all"
        )
        data = {"done": p.done, "failed": p.failed, "ended": p.ended}
        ended.bars.append(Bar(x0, TOP, x1 - x0, H - TOP - BOTTOM, tip, data))
        y = _y(p.throughput, fastest)
        rate.bars.append(Bar(x0, y, max(x1 - x0 - 0.5, 0.5), H - BOTTOM - y, tip, data))
    return ended, rate


def histogram(times: wire.Runtimes) -> Plot | None:
    """The run times' bins as bars (None: no run time known)."""
    if not times.bins:
        return None
    n = len(times.bins)
    most = max(b.count for b in times.bins) or 1
    plot = Plot(top=f"{most:,}", left="0 s", right=f"{_seconds(times.bins[-1].hi)}")
    plot.data = {"runs": times.runs}
    for i, b in enumerate(times.bins):
        x0, x1 = _x(i, n), _x(i + 1, n)
        y = _y(b.count, most)
        tip = f"{_seconds(b.lo)} to {_seconds(b.hi)}: {b.count:,} runs"
        data = {"lo": b.lo, "hi": b.hi, "count": b.count}
        plot.bars.append(Bar(x0, y, max(x1 - x0 - 1, 0.5), H - BOTTOM - y, tip, data))
    return plot


def spark(line: wire.Timeline) -> Plot | None:
    """The overview's small timeline: cumulative done and failed (None: nothing ended)."""
    points = line.points
    if not points:
        return None
    n, most = len(points), max(points[-1].done, points[-1].failed, 1)
    plot = Plot(data={"done": points[-1].done, "failed": points[-1].failed, "points": n})
    for name in ("done", "failed"):
        coords = [(0.0, float(SPARK_H - 1))]
        coords += [
            (_x(i + 1, n, 0, SPARK_W), _y(getattr(p, name), most, 1, SPARK_H - 2))
            for i, p in enumerate(points)
        ]
        plot.lines[name] = " ".join(f"{x},{y}" for x, y in coords)
    return plot


def busy_spark(look: glance.Glance, slots: int) -> Plot:
    """An agent's busy slots over the last hour, against its slots."""
    n = len(look.busy)
    plot = Plot(top=str(slots))
    known = [(i, b) for i, b in enumerate(look.busy) if b is not None]
    coords = []
    for i, b in known:
        y = _y(min(b, slots), slots, 1, SPARK_H - 2)
        coords += [(_x(i, n, 0, SPARK_W), y), (_x(i + 1, n, 0, SPARK_W), y)]
    plot.lines["busy"] = " ".join(f"{x},{y}" for x, y in coords)
    now = known[-1][1] if known else 0.0
    peak = max((b for _, b in known), default=0.0)
    plot.data = {"now": round(now, 2), "peak": round(peak, 2), "buckets": len(known)}
    plot.right = f"{now:.1f} of {slots} busy now, {peak:.1f} at most"
    return plot


def campaign_context(
    session: Session, campaign: wire.Campaign, *, now: datetime, kept: charts.Kept
) -> dict[str, Any]:
    """What the campaign page's plots need (`plots` in its template)."""
    conn = session.connection()
    line = charts.of_campaign(conn, campaign, now=now, kept=kept)
    times = charts.runtimes_of(conn, campaign, kept=kept)
    return {
        "plots": {"timeline": timeline_plots(line), "times": times, "histogram": histogram(times)}
    }


def overview_context(
    session: Session,
    rows: list[wire.Campaign],
    agents: list[AgentStatus],
    *,
    now: datetime,
    kept: charts.Kept,
) -> dict[str, Any]:
    """What the overview's small plots need: a timeline per campaign, and per agent its
    busy slots and newest error (`sparks` and `glance` in its template)."""
    conn = session.connection()
    sparks = {
        c.id: spark(
            charts.of_campaign(
                conn, c, now=now, buckets=OVERVIEW_BUCKETS, kept=kept, period=OVERVIEW_KEEP
            )
        )
        for c in rows[:OVERVIEW_PLOTS]
    }
    ids = tuple(a.agent.id for a in agents)
    moment = int(time.monotonic() // OVERVIEW_KEEP)
    looks = kept.get(("glance", ids, moment), lambda: glance.of_agents(session, list(ids), now=now))
    return {
        "sparks": sparks,
        "glance": {
            a.agent.id: (looks[a.agent.id], busy_spark(looks[a.agent.id], a.agent.slots))
            for a in agents
        },
    }


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f} {unit}"
    return f"{seconds:g} s"


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.3g} h"
    if value >= 60:
        return f"{value / 60:.3g} min"
    return f"{value:.3g} s"


def _rate(per_second: float) -> str:
    if per_second >= 1:
        return f"{per_second:,.1f}/s"
    return f"{per_second * 60:,.1f}/min"
