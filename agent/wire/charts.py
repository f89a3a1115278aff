"""What the campaign page plots, as the API serves it: records ended over time (bucketed)
and the distribution of run times. Aggregates only: never a row per record."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from farmhand.wire.base import Loose


class TimelinePoint(Loose):
    """One time bucket: records that ended done or failed in it, the running totals at its
    end, and its throughput."""

    t: datetime = Field(description="the bucket's start (UTC)")
    done: int = Field(description="records done by the bucket's end (cumulative)")
    failed: int = Field(description="records failed by the bucket's end (cumulative)")
    ended: int = Field(description="records that became done or failed in this bucket")
    throughput: float = Field(description="records/s in this bucket: ended / bucket_seconds")


class Timeline(Loose):
    """A campaign's done and failed records over time, in equal buckets from `start`.

    A record counts once, at its last change to done or failed (a record retried and ended
    again moves), so the last point's totals are the campaign's done and failed counts."""

    campaign_id: int
    bucket_seconds: int = Field(description="the width of each bucket")
    start: datetime | None = Field(description="the first bucket's start; None: nothing ended")
    points: list[TimelinePoint]


class RuntimeBin(Loose):
    """Runs that took from `lo` up to (not including) `hi` seconds."""

    lo: float
    hi: float
    count: int


class SlowRecord(Loose):
    """One of the slowest records: its last run's time from start to end."""

    record_id: int
    key: str
    state: str
    seconds: float


class Runtimes(Loose):
    """The run times (start to end of the last run) of a campaign's done and failed records.

    Read from the newest `scanned` of them; `finished` is how many there are in all."""

    campaign_id: int
    finished: int = Field(description="records done or failed")
    scanned: int = Field(description="the newest finished records read")
    runs: int = Field(description="of those, the ones whose last run started and ended")
    bins: list[RuntimeBin]
    slowest: list[SlowRecord] = Field(description="the slowest of the records read, slowest first")
