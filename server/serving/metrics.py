"""Prometheus metrics, served at `/metrics` in the text exposition format.

Two kinds: event counters kept in this process (claims, run ends, lease expiries, claim
latency), incremented by one-line calls where the events happen; and gauges read from the
database at scrape time (records by campaign and state, agents by liveness), so every
replica of the server reports the same shared truth.

The counters live at module level, as in every Prometheus client, but are registered only in
each app's own registry: two apps in one process (tests) do not clash, and nothing is
registered at import.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool

from farmhand import wire
from farmhand.server.tables import utcnow
from farmhand.server.views import status

CLAIMS = Counter("farmhand_claims", "Records leased to agents by claims.", registry=None)
CLAIM_SECONDS = Histogram(
    "farmhand_claim_seconds",
    "Duration of one claim transaction (a long poll's waiting is not included).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)
RUNS_ENDED = Counter(
    "farmhand_runs_ended",
    "Runs ended by an agent's report, by final run state (done = completions).",
    ["state"],
    registry=None,
)
LEASE_EXPIRIES = Counter(
    "farmhand_lease_expiries",
    "Leases that expired unrenewed, by what became of the record (requeued or failed).",
    ["outcome"],
    registry=None,
)
_EVENTS = (CLAIMS, CLAIM_SECONDS, RUNS_ENDED, LEASE_EXPIRIES)


def claim_attempted(seconds: float, leased: int) -> None:
    """Observe one claim attempt's duration and count the records it leased. (A call, not a
    decorator: a claim's attempt is a closure made per request, and wrapping it each time
    cost an idle long poll's arrival as much as the rest of the route.)"""
    CLAIM_SECONDS.observe(seconds)
    CLAIMS.inc(leased)


def runs_ended(*acks: wire.RunAck | None) -> None:
    """Count acknowledged final reports (complete, fail, release) by the run's state."""
    for ack in acks:
        if ack is not None:
            RUNS_ENDED.labels(ack.run_state.value).inc()


def leases_expired(*, requeued: int, failed: int) -> None:
    """Count expired leases."""
    if requeued:
        LEASE_EXPIRIES.labels("requeued").inc(requeued)
    if failed:
        LEASE_EXPIRIES.labels("failed").inc(failed)


class _DatabaseGauges:
    """Gauges read from the database at scrape time."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        """One read transaction: record counts by campaign and state, agents by liveness."""
        settings = self.app.state.settings
        with self.app.state.db.read() as session:
            campaigns = status.campaigns(session)
            agents = status.agent_totals(session, now=utcnow(), stale_after=settings.lease_ttl)
        records = GaugeMetricFamily(
            "farmhand_records",
            "Records by campaign and state.",
            labels=["campaign_id", "campaign", "version", "state"],
        )
        for campaign in campaigns:
            for state, n in campaign.counts.items():
                labels = [str(campaign.id), campaign.name, str(campaign.version), state.value]
                records.add_metric(labels, n)
        yield records
        alive = GaugeMetricFamily(
            "farmhand_agents",
            "Agents that have not stopped: live (heartbeat within the lease TTL), "
            "draining, or stale (no heartbeat for longer than the lease TTL).",
            labels=["status"],
        )
        for name, n in agents.items():
            alive.add_metric([name], n)
        yield alive


class _WaitingClaims:
    """Long-poll claims waiting in this process now (not a database gauge: per replica)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        """One gauge, read from the app's wakeup."""
        waiting = GaugeMetricFamily(
            "farmhand_claims_waiting",
            "Long-poll claims of this process waiting for work (found nothing, not yet woken).",
        )
        waiting.add_metric([], self.app.state.wakeup.waiting)
        yield waiting


def mount(app: FastAPI) -> None:
    """Serve `/metrics` from this app's own registry."""
    registry = CollectorRegistry(auto_describe=False)
    # Every labelled series exists from the start, at 0: a rate over a counter that appears
    # with its first event misses that event, and a scrape can tell 0 from "not counted".
    for state in wire.RunState:
        if state not in wire.LIVE_RUN_STATES:
            RUNS_ENDED.labels(state.value)
    for outcome in ("requeued", "failed"):
        LEASE_EXPIRIES.labels(outcome)
    gauges = (_DatabaseGauges(app), _WaitingClaims(app))
    for collector in (*_EVENTS, ProcessCollector(registry=None), *gauges):
        registry.register(collector)  # type: ignore[arg-type]

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus text format (OpenMetrics when asked for); needs no token, like /healthz."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encode, registry)
        return Response(body, headers={"Content-Type": content_type})
