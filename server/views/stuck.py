"""Why ready records do not move: the ready records no live agent can take, by reason.

A live agent is one that would claim now: `active` (not draining, not stopped) with a
heartbeat younger than `stale_after`, and not paused (its disk guard). It offers runners
(None: it did not say, so any), holds total resources (None, or a None amount: not said, so
unlimited) and has a walltime left (its batch job's end, from its last heartbeat; None:
unlimited). A ready record is stuck when no live agent both offers its runner and holds every
amount it asks for, its walltime included: the claim's own test, against an agent's whole
resources instead of its free share now. A runner the agent stopped offering (its heartbeat
status lists it in `broken_runners`: it could not start commands) is not offered by it any
more, and the message about its records names the agents that dropped it and why.

Cost at a million records: the live agents collapse into a few distinct profiles (fifty
identical nodes are one), and one GROUP BY over the ready rows (partial index
`ix_record_ready`) keeps only the stuck ones, so Python sees a handful of groups, never a
row per record. With no live agent at all, one count over the state index says enough.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, func, not_, or_, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.tables import AGENT, REC
from farmhand.server.views.status import agent_totals

DIMENSIONS = ("gpus", "cores", "memory_mb", "walltime")
#: An agent's walltime left is rounded down to this many seconds, so that profiles (and the
#: overview's kept answer) change once a minute, not with every heartbeat.
WALLTIME_STEP = 60
#: Above this many distinct agent profiles the test uses one envelope per runner instead
#: (the largest amount of each kind): it may then miss records no single agent fits.
MAX_PROFILES = 64
#: Stuck groups (runner and amounts) read at most; the rest is reported as one remainder.
MAX_GROUPS = 500
_READY = literal_in(REC.c.state, [wire.RecordState.ready.value])


@dataclass(frozen=True)
class Profile:
    """What one or more live agents offer: runners (None: any) and amounts (None: unlimited),
    the seconds of walltime left among them."""

    runners: frozenset[str] | None
    cores: float | None = None
    gpus: int | None = None
    memory_mb: int | None = None
    walltime: float | None = None

    def offers(self, runner: str) -> bool:
        """It runs records of `runner`."""
        return self.runners is None or runner in self.runners

    def covers(self, other: Profile) -> bool:
        """Every record `other` can take, this one can take too."""
        if self.runners is not None and (other.runners is None or other.runners - self.runners):
            return False
        return all(_at_least(getattr(self, d), getattr(other, d)) for d in DIMENSIONS)

    def takes(self) -> Any:
        """SQL: the record's runner and amounts fit this profile."""
        terms = [] if self.runners is None else [REC.c.runner.in_(sorted(self.runners))]
        for name in DIMENSIONS:
            amount = getattr(self, name)
            if amount is not None:
                column = REC.c[name]
                terms.append(or_(column.is_(None), column <= amount))
        return and_(True, *terms)


def _at_least(mine: float | None, theirs: float | None) -> bool:
    return mine is None or (theirs is not None and mine >= theirs)


def live_profiles(session: Session, *, now: datetime, stale_after: float) -> list[Profile]:
    """The distinct offers of the live agents, without those another one covers."""
    seen = set()
    for _, runners, resources, status, beat in _live(session, now=now, stale_after=stale_after):
        if (status or {}).get("paused"):
            continue  # it claims nothing now
        amounts = {d: (resources or {}).get(d) for d in DIMENSIONS if d != "walltime"}
        amounts["walltime"] = _walltime_now((status or {}).get("walltime_left"), beat, now)
        if runners is not None:
            runners = frozenset(runners) - set(_broken(status))
        seen.add(Profile(runners, **amounts))
    return [p for p in seen if not any(q != p and q.covers(p) for q in seen)]


def _live(session: Session, *, now: datetime, stale_after: float) -> Any:
    """Name, runners, resources, status and last heartbeat of every live agent, paused or
    not."""
    cutoff = now - timedelta(seconds=stale_after)
    columns = (AGENT.c.runners, AGENT.c.resources, AGENT.c.status, AGENT.c.last_heartbeat)
    return session.execute(
        select(AGENT.c.name, *columns).where(
            AGENT.c.state == "active", AGENT.c.last_heartbeat >= cutoff
        )
    ).all()


def _broken(status: dict[str, Any] | None) -> dict[str, str]:
    """The runners an agent's status says it stopped offering, and why."""
    broken = (status or {}).get("broken_runners")
    return {str(k): str(v) for k, v in broken.items()} if isinstance(broken, dict) else {}


Dropped = dict[str, list[tuple[str, str]]]


def dropped(session: Session, *, now: datetime, stale_after: float) -> Dropped:
    """Runner → (agent name, why) for each live agent that stopped offering it."""
    out: Dropped = defaultdict(list)
    for name, *_, status, _ in _live(session, now=now, stale_after=stale_after):
        for runner, why in sorted(_broken(status).items()):
            out[runner].append((name, why))
    return out


def _walltime_now(left: Any, beat: datetime, now: datetime) -> float | None:
    """An agent's walltime left now: what its last heartbeat said, less the time since."""
    if not isinstance(left, (int, float)) or isinstance(left, bool):
        return None
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=timezone.utc)
    seconds = max(0.0, left - max(0.0, (now - beat).total_seconds()))
    return float(int(seconds // WALLTIME_STEP) * WALLTIME_STEP)


def _envelopes(profiles: list[Profile]) -> list[Profile]:
    """One profile per runner set: the most of each amount among the agents offering it."""
    names = set().union(*(p.runners for p in profiles if p.runners is not None))
    out = []
    for runner in [None, *sorted(names)]:
        offering = [p for p in profiles if p.runners is None or runner in (p.runners or ())]
        if not offering:
            continue
        amounts = {d: _largest(offering, d) for d in DIMENSIONS}
        out.append(Profile(None if runner is None else frozenset([runner]), **amounts))
    return out


def _largest(profiles: list[Profile], dimension: str) -> float | None:
    """The most of `dimension` among `profiles`; None if any is unlimited."""
    amounts = [getattr(p, dimension) for p in profiles]
    return None if any(a is None for a in amounts) else max(amounts)


def explain(
    session: Session, *, now: datetime, stale_after: float, ready: int | None = None
) -> list[wire.StuckRecords]:
    """Why ready records do not move, largest group first; `ready` saves counting them."""
    if ready is None:
        ready = session.execute(select(func.count()).where(_READY)).scalar_one()
    if not ready:
        return []
    profiles = live_profiles(session, now=now, stale_after=stale_after)
    if not profiles:
        return [_nobody(session, ready, now=now, stale_after=stale_after)]
    return _stuck(session, profiles, dropped(session, now=now, stale_after=stale_after))


class Recent:
    """The overview's explanation, kept up to `ttl` seconds while the live agents stay the
    same. Its GROUP BY costs 60-110 ms at a million records and every open page refreshes
    every few seconds; `GET /status` (`farmhand status`) always computes afresh."""

    def __init__(self, ttl: float = 10.0):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._kept: tuple[float, frozenset[Profile], list[wire.StuckRecords]] | None = None

    def explain(
        self, session: Session, *, now: datetime, stale_after: float, ready: int
    ) -> list[wire.StuckRecords]:
        """`explain`, from the kept answer when the live agents are the same and it is young."""
        if not ready:
            return []
        profiles = live_profiles(session, now=now, stale_after=stale_after)
        if not profiles:  # cheap: always fresh
            return [_nobody(session, ready, now=now, stale_after=stale_after)]
        key, moment = frozenset(profiles), time.monotonic()
        with self._lock:
            kept = self._kept
        if kept is not None and kept[1] == key and moment - kept[0] < self.ttl:
            return kept[2]
        answer = _stuck(session, profiles, dropped(session, now=now, stale_after=stale_after))
        with self._lock:
            self._kept = (moment, key, answer)
        return answer


def _stuck(
    session: Session, profiles: list[Profile], dropped_by: Dropped
) -> list[wire.StuckRecords]:
    """The ready records none of the live agents' `profiles` takes, by reason; `dropped_by`
    names the agents that stopped offering a runner (`dropped`)."""
    if len(profiles) > MAX_PROFILES:
        profiles = _envelopes(profiles)
    if any(p.covers(Profile(None)) for p in profiles):
        return []  # an agent that takes any runner and any amount: nothing is stuck
    groups = select(REC.c.runner, *(REC.c[d] for d in DIMENSIONS), func.count().label("n"))
    groups = groups.where(_READY, not_(or_(*(p.takes() for p in profiles))))
    groups = groups.group_by(REC.c.runner, *(REC.c[d] for d in DIMENSIONS))
    rows = session.execute(groups.order_by(func.count().desc()).limit(MAX_GROUPS + 1)).all()
    out = _classify(rows[:MAX_GROUPS], profiles, dropped_by)
    if len(rows) > MAX_GROUPS:
        out.append(_remainder(session, profiles, rows[:MAX_GROUPS]))
    return sorted(out, key=lambda s: -s.count)


def _nobody(
    session: Session, ready: int, *, now: datetime, stale_after: float
) -> wire.StuckRecords:
    totals = agent_totals(session, now=now, stale_after=stale_after)
    paused = [
        str((status or {}).get("paused"))
        for *_, status, _ in _live(session, now=now, stale_after=stale_after)
        if (status or {}).get("paused")
    ]
    others = [f"{len(paused)} paused: {paused[0]}"] if paused else []
    others += [f"{totals[k]} {k}" for k in ("draining", "stale") if totals.get(k)]
    note = f" ({'; '.join(others)})" if others else ""
    return wire.StuckRecords(
        reason="no_live_agent",
        count=ready,
        message=f"{_records(ready)}, no live agent{note}",
    )


def _classify(
    rows: list[Any], profiles: list[Profile], dropped_by: Dropped
) -> list[wire.StuckRecords]:
    """Sort the stuck groups into reasons: an unoffered runner (naming the agents that
    stopped offering it), an amount larger than any agent offering the runner holds, or
    amounts no one agent holds together."""
    unoffered: dict[str, int] = defaultdict(int)
    too_big: dict[tuple[str, str | None], list[float]] = {}  # (dimension, runner): n, lo, hi
    combined: list[Any] = []
    everyone = {d: _largest(profiles, d) for d in DIMENSIONS}
    for row in rows:
        offering = [p for p in profiles if p.offers(row.runner)]
        if not offering:
            unoffered[row.runner] += row.n
            continue
        exceeded = False
        for name in DIMENSIONS:
            need, most = getattr(row, name), _largest(offering, name)
            if need is None or most is None or need <= most:
                continue
            exceeded = True
            # Name the runner only when it is why the largest amount is smaller.
            runner = row.runner if most != everyone[name] else None
            n, lo, hi = too_big.get((name, runner), (0, need, need))
            too_big[(name, runner)] = [n + row.n, min(lo, need), max(hi, need)]
        if not exceeded:
            combined.append(row)
    out = [
        wire.StuckRecords(
            reason="runner",
            count=n,
            runner=runner,
            message=f"{_records(n)} {_need(n)} runner '{runner}', offered by no live agent"
            + _dropped_note(dropped_by.get(runner, [])),
        )
        for runner, n in unoffered.items()
    ]
    for (name, runner), (n, lo, hi) in too_big.items():
        offering = [p for p in profiles if runner is None or p.offers(runner)]
        most = _largest(offering, name)
        amount = _amount(name, hi)
        if lo != hi:  # `2 to 4 GPUs`, `20 GiB to 32 GiB memory`
            low = {"memory_mb": _amount(name, lo), "walltime": _duration(lo)}.get(name, _number(lo))
            amount = f"{low} to {amount}"
        if name == "walltime":
            who, has = "the live agent with the most time left", _duration(most)
        else:
            who, has = "the largest live agent", _amount(name, most)
        if runner:
            who += f" offering runner '{runner}'"
        out.append(
            wire.StuckRecords(
                reason=name,
                count=n,
                runner=runner,
                needed=hi,
                largest=most,
                message=f"{_records(n)} {_need(n)} {amount}; {who} has {has}",
            )
        )
    if combined:
        n = sum(row.n for row in combined)
        example = ", ".join(
            _amount(d, getattr(combined[0], d))
            for d in DIMENSIONS
            if getattr(combined[0], d) is not None
        )
        out.append(
            wire.StuckRecords(
                reason="combination",
                count=n,
                message=f"{_records(n)} {_need(n)} more at once than any one live agent "
                f"holds (e.g. {example} together)",
            )
        )
    return out


def _dropped_note(agents: list[tuple[str, str]]) -> str:
    """` (agent n1 stopped offering it: why)`, and how many more did, or nothing."""
    if not agents:
        return ""
    (name, why), more = agents[0], len(agents) - 1
    also = f"; {more} more live agent(s) did too" if more else ""
    return f" (agent {name} stopped offering it: {why}{also})"


def _remainder(session: Session, profiles: list[Profile], seen: list[Any]) -> wire.StuckRecords:
    total = session.execute(
        select(func.count()).where(_READY, not_(or_(*(p.takes() for p in profiles))))
    ).scalar_one()
    n = total - sum(row.n for row in seen)
    return wire.StuckRecords(
        reason="other",
        count=n,
        message=f"{_records(n)} more no live agent can take, in many different sizes",
    )


def _records(n: int) -> str:
    return f"{n:,} ready record" + ("" if n == 1 else "s")


def _need(n: int) -> str:
    return "needs" if n == 1 else "need"


def _number(value: float | None) -> str:
    if value is None:
        return "no limit"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _amount(dimension: str, value: float | None) -> str:
    """`4 GPUs`, `1 GPU`, `2.5 cores`, `16 GiB memory`, `1500 MiB memory`, `2h 30m walltime`."""
    if value is None:
        return "no limit"
    if dimension == "walltime":
        return f"{_duration(value)} walltime"
    if dimension == "memory_mb":
        if value >= 1024 and value % 1024 == 0:
            return f"{value / 1024:g} GiB memory"
        return f"{_number(value)} MiB memory"
    unit = "GPU" if dimension == "gpus" else "core"
    return f"{_number(value)} {unit}{'' if value == 1 else 's'}"


def _duration(seconds: float) -> str:
    """`4h 00m`, `45m`, `30s`."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    if hours:
        return f"{hours}h {rest // 60:02d}m"
    return f"{rest // 60}m" if rest >= 60 else f"{rest}s"


def farm(session: Session, *, now: datetime, stale_after: float) -> wire.FarmStatus:
    """Ready records, agents by liveness, and why ready records are stuck (`GET /status`)."""
    ready = session.execute(select(func.count()).where(_READY)).scalar_one()
    return wire.FarmStatus(
        ready=ready,
        agents=agent_totals(session, now=now, stale_after=stale_after),
        stuck=explain(session, now=now, stale_after=stale_after, ready=ready),
    )
