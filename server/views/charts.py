"""What the campaign page plots: records ended over time, and the distribution of run times
(read-only; the API serves the same answers).

Both read `ix_record_campaign_ended` (migration 0013): `(campaign_id, state, updated_at)`
over done and failed records only, so the claim never writes it. A finished record's
`updated_at` is the moment it became done or failed (the report, or the failed parent, set
it). The timeline counts each bucket's records with one index range count per bucket and
state (a correlated subquery over a `VALUES` list of bucket bounds): an index-only walk of
the campaign's finished records, with no sort and no row read, on SQLite and PostgreSQL
alike. Run times need each record's last run, a primary-key read per record, so they come
from the newest `RUNTIMES_READ` finished records (found newest first in the same index,
without reading their rows; then the rows of those alone, and their last runs).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Integer, column, func, select, values
from sqlalchemy.engine import Connection

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.tables import REC, RUN, UTCDateTime

S = wire.RecordState
ENDED = (S.done, S.failed)
#: The partial index's own condition, written as literals so the planners match it.
_IN_ENDED = literal_in(REC.c.state, ENDED)
MAX_BUCKETS = 120
#: Bucket widths a timeline may use (seconds): the first that keeps the campaign's span
#: within `buckets` buckets.
WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
DAY = 86400
#: Finished records whose last run's time the histogram reads (the newest of them).
RUNTIMES_READ = 2_000
RUNTIME_BINS = 24
SLOWEST = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NEVER = datetime(9999, 12, 31, tzinfo=timezone.utc)


def bucket_width(span: float, buckets: int = MAX_BUCKETS) -> int:
    """The narrowest round width (seconds) that covers `span` seconds in `buckets`."""
    for width in WIDTHS:
        if span <= width * buckets:
            return width
    return DAY * max(1, math.ceil(span / (DAY * buckets)))


def _in_state(state: S) -> Any:
    return [literal_in(REC.c.state, [state]), _IN_ENDED]


def _ends(conn: Connection, campaign_id: int) -> tuple[datetime | None, datetime | None]:
    """The first and last moment a record of the campaign became done or failed (index
    seeks: one minimum and one maximum per state)."""
    probes = []
    for state in ENDED:
        where = [REC.c.campaign_id == campaign_id, *_in_state(state)]
        for fn in (func.min, func.max):
            probes.append(select(fn(REC.c.updated_at)).where(*where).scalar_subquery())
    found = conn.execute(select(*probes)).one()
    moments = [m if m is None or m.tzinfo else m.replace(tzinfo=timezone.utc) for m in found]
    firsts = [m for m in moments[0::2] if m is not None]
    lasts = [m for m in moments[1::2] if m is not None]
    return (min(firsts) if firsts else None, max(lasts) if lasts else None)


def timeline(
    conn: Connection,
    *,
    campaign_id: int,
    started_at: datetime | None,
    running: bool,
    now: datetime,
    buckets: int = MAX_BUCKETS,
) -> wire.Timeline:
    """Done and failed records over time in at most `buckets` equal buckets, from the
    campaign's first claim (or first end) to now while it runs, else to its last end."""
    first, last = _ends(conn, campaign_id)
    if first is None or last is None:
        return wire.Timeline(campaign_id=campaign_id, bucket_seconds=1, start=None, points=[])
    begin = min(first, started_at) if started_at is not None else first
    end = max(last, now) if running else last
    seconds = (end - begin).total_seconds()
    width = bucket_width(seconds, buckets)
    # Buckets start on a multiple of their width (round times read better); that may need
    # one bucket more than the span, so widen until they fit.
    while True:
        origin = math.floor((begin - _EPOCH).total_seconds() / width) * width
        count = max(1, math.ceil(((end - _EPOCH).total_seconds() - origin) / width))
        if count <= buckets:
            break
        width = bucket_width(width * (buckets + 1), buckets)
    start = _EPOCH + timedelta(seconds=origin)
    bounds = [start + timedelta(seconds=width * i) for i in range(count + 1)]
    rows = [(i, bounds[i], bounds[i + 1]) for i in range(count)]
    # The outer buckets are open, so the counts add up to the campaign's totals even when a
    # record ended between the two reads.
    rows[0] = (0, _EPOCH, rows[0][2])
    rows[-1] = (count - 1, rows[-1][1], _NEVER)
    table = (
        values(column("i", Integer), column("lo", UTCDateTime), column("hi", UTCDateTime), name="b")
        .data(rows)
        .cte("b")
    )  # a CTE: SQLite takes no column names on a VALUES alias

    def ended_in(state: S) -> Any:
        return (
            select(func.count())
            .where(
                REC.c.campaign_id == campaign_id,
                *_in_state(state),
                REC.c.updated_at >= table.c.lo,
                REC.c.updated_at < table.c.hi,
            )
            .scalar_subquery()
        )

    counted = conn.execute(
        select(table.c.i, ended_in(S.done), ended_in(S.failed)).order_by(table.c.i)
    ).all()
    points, done, failed = [], 0, 0
    for i, d, f in counted:
        done, failed = done + d, failed + f
        moment = bounds[i]
        point = wire.TimelinePoint(
            t=moment, done=done, failed=failed, ended=d + f, throughput=(d + f) / width
        )
        points.append(point)
    return wire.Timeline(campaign_id=campaign_id, bucket_seconds=width, start=start, points=points)


def runtimes(
    conn: Connection,
    *,
    campaign_id: int,
    finished: int,
    read: int = RUNTIMES_READ,
    bins: int = RUNTIME_BINS,
    slowest: int = SLOWEST,
) -> wire.Runtimes:
    """How long the last runs of the campaign's newest `read` finished records took (start
    to end), in at most `bins` equal bins from 0, and the `slowest` of them."""
    newest: list[Any] = []
    for state in ENDED:  # newest first, per state, from the index alone; merged below
        newest += conn.execute(
            select(REC.c.updated_at, REC.c.id)
            .where(REC.c.campaign_id == campaign_id, *_in_state(state))
            .order_by(REC.c.updated_at.desc())
            .limit(read)
        ).all()
    newest.sort(reverse=True)
    ids = [row.id for row in newest[:read]]
    found = conn.execute(
        select(REC.c.id, REC.c.key, REC.c.state, RUN.c.started_at, RUN.c.ended_at)
        .select_from(REC.join(RUN, RUN.c.id == REC.c.run_id))
        .where(REC.c.id.in_(ids))
    ).all()
    timed = [
        wire.SlowRecord(
            record_id=row.id,
            key=row.key,
            state=row.state,
            seconds=max(0.0, (row.ended_at - row.started_at).total_seconds()),
        )
        for row in found
        if row.started_at is not None and row.ended_at is not None
    ]
    return wire.Runtimes(
        campaign_id=campaign_id,
        finished=max(finished, len(ids)),
        scanned=len(ids),
        runs=len(timed),
        bins=_bins([t.seconds for t in timed], bins),
        slowest=sorted(timed, key=lambda t: (-t.seconds, t.record_id))[:slowest],
    )


def _bins(seconds: list[float], most: int) -> list[wire.RuntimeBin]:
    """Equal bins from 0 whose round width (1, 2 or 5 times a power of ten) puts the
    longest time in the last of at most `most` bins."""
    if not seconds:
        return []
    top = max(seconds)
    width = _round_up(top / most) if top > 0 else 1.0
    while math.floor(top / width) + 1 > most:
        width = _round_up(width * 1.01)
    counts = [0] * (math.floor(top / width) + 1)
    for s in seconds:
        counts[min(len(counts) - 1, math.floor(s / width))] += 1
    return [
        wire.RuntimeBin(lo=_tidy(i * width), hi=_tidy((i + 1) * width), count=n)
        for i, n in enumerate(counts)
    ]


def _round_up(x: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least `x`."""
    power = 10.0 ** math.floor(math.log10(x))
    for step in (1, 2, 5, 10):
        if step * power >= x:
            return step * power
    return 10 * power


def _tidy(x: float) -> float:
    return round(x, 9)


class Kept:
    """Answers kept per campaign while its done and failed counts stay the same (up to
    `max_age` seconds): a finished campaign's plots cost nothing on each refresh."""

    def __init__(self, max_age: float = 30.0) -> None:
        self.max_age = max_age
        self._kept: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """The answer kept under `key`, or a new one from `make`."""
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and now - kept[0] < self.max_age:
            return kept[1]
        answer = make()
        with self._lock:
            if len(self._kept) > 1000:  # campaigns come and go: forget the old ones
                self._kept = {k: v for k, v in self._kept.items() if now - v[0] < self.max_age}
            self._kept[key] = (now, answer)
        return answer


REMAINING = (S.waiting, S.ready, S.claimed, S.running)


def remaining(conn: Connection, campaign_id: int) -> bool:
    """Records of the campaign are still waiting, ready or leased (one index seek per
    state, where the campaign's counts would read them all)."""
    where = [REC.c.campaign_id == campaign_id, literal_in(REC.c.state, REMAINING)]
    return conn.execute(select(REC.c.id).where(*where).limit(1)).first() is not None


def finished(conn: Connection, campaign_id: int) -> int:
    """The campaign's done and failed records, counted in ix_record_campaign_ended."""
    where = [REC.c.campaign_id == campaign_id, _IN_ENDED]
    return conn.execute(select(func.count()).where(*where)).scalar_one()


#: Seconds a page keeps a running campaign's plots, whatever its counts do.
RUNNING_KEEP = 5


def _kept_as(campaign: wire.Campaign, period: float = RUNNING_KEEP) -> tuple[Any, ...]:
    """What a kept answer stands for: a running campaign's, a moment of `period` seconds
    (every viewer's refresh would otherwise recount it, since its counts change all the
    time); a finished one's, its done and failed counts (a retry changes them)."""
    if any(campaign.counts.get(s) for s in REMAINING):
        return ("running", int(time.monotonic() // period))
    return ("ended", *(campaign.counts.get(s, 0) for s in ENDED))


def of_campaign(
    conn: Connection,
    campaign: wire.Campaign,
    *,
    now: datetime,
    buckets: int = MAX_BUCKETS,
    kept: Kept | None = None,
    period: float = RUNNING_KEEP,
) -> wire.Timeline:
    """The timeline of `campaign` (its counts as read), from `kept` when it holds one for
    the same moment (`period` seconds) of a running campaign or the same counts of a
    finished one."""

    def make() -> wire.Timeline:
        return timeline(
            conn,
            campaign_id=campaign.id,
            started_at=campaign.started_at,
            running=any(campaign.counts.get(s) for s in REMAINING),
            now=now,
            buckets=buckets,
        )

    if kept is None:
        return make()
    return kept.get(("timeline", campaign.id, buckets, *_kept_as(campaign, period)), make)


def runtimes_of(
    conn: Connection, campaign: wire.Campaign, *, kept: Kept | None = None
) -> wire.Runtimes:
    """The run times of `campaign`'s newest finished records, kept like `of_campaign`."""

    def make() -> wire.Runtimes:
        done = sum(campaign.counts.get(s, 0) for s in ENDED)
        return runtimes(conn, campaign_id=campaign.id, finished=done)

    if kept is None:
        return make()
    return kept.get(("runtimes", campaign.id, *_kept_as(campaign)), make)
