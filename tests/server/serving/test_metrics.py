"""`/metrics`: Prometheus text that the reference parser reads, and values that follow events.

The event counters are per process (shared by every app in this test process), so the tests
compare before and after; the database gauges belong to each app.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from farmhand.server.queue import leases
from farmhand.server.tables import Agent, utcnow
from tests.server.helpers import API, agent, campaign, claim, submit

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(api: TestClient) -> Samples:
    r = api.get("/metrics", headers={"Authorization": ""})  # needs no token
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One series' value; a series the scrape lacks fails (it is not read as 0)."""
    series = (name, tuple(sorted(labels.items())))
    assert series in samples, f"no series {name}{dict(labels)} in the scrape"
    return samples[series]


def test_records_by_campaign_and_state(api: TestClient) -> None:
    a, b = campaign(api, "alpha"), campaign(api, "beta")
    submit(api, a, "1", "2", "3")
    submit(api, b, "x")
    claim(api, agent(api), 2)
    samples = scrape(api)

    def records(campaign_id: int, name: str, state: str) -> float:
        labels = {"campaign_id": str(campaign_id), "campaign": name, "version": "1"}
        return value(samples, "farmhand_records", **labels, state=state)

    assert records(a, "alpha", "claimed") == 2
    assert records(a, "alpha", "ready") == 1
    assert records(a, "alpha", "done") == 0
    assert records(b, "beta", "ready") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_openmetrics_when_the_scraper_asks_for_it(api: TestClient) -> None:
    submit(api, campaign(api), "a")
    r = api.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    names = {family.name for family in openmetrics_families(r.text)}
    assert {"farmhand_records", "farmhand_claims", "farmhand_claim_seconds"} <= names


def test_claims_completions_and_latency_are_counted(api: TestClient) -> None:
    submit(api, campaign(api), "a", "b", "c", "d")
    a = agent(api)
    before = scrape(api)
    got = claim(api, a, 3)
    claim(api, a, 5)  # one more record
    claim(api, a, 1)  # nothing left: a claim that leases nothing still takes time
    done = {"token": got[0]["token"]}
    assert api.post(f"{API}/runs/{got[0]['run_id']}/complete", json=done).status_code == 200
    assert api.post(f"{API}/runs/{got[0]['run_id']}/complete", json=done).status_code == 200
    failed = {"token": got[1]["token"], "error": "exit code 1"}
    assert api.post(f"{API}/runs/{got[1]['run_id']}/fail", json=failed).status_code == 200
    batch = [{"run_id": got[2]["run_id"], "token": got[2]["token"]}, {"run_id": 999, "token": "x"}]
    assert api.post(f"{API}/runs/reports", json={"reports": batch}).status_code == 200
    after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("farmhand_claims_total") == 4
    assert delta("farmhand_claim_seconds_count") == 3
    assert delta("farmhand_claim_seconds_sum") > 0
    assert delta("farmhand_claim_seconds_bucket", le="+Inf") == 3
    # The repeated completion is acknowledged again and counted again (documented).
    assert delta("farmhand_runs_ended_total", state="done") == 3
    assert delta("farmhand_runs_ended_total", state="failed") == 1


def test_lease_expiries_are_counted_by_outcome(api: TestClient) -> None:
    c = campaign(api, max_attempts=1)
    submit(api, c, "once")
    submit(api, c, "twice", max_attempts=2)
    claim(api, agent(api), 2)
    before = scrape(api)
    with api.app.state.db.write() as session:  # the sweeper's pass, an hour from now
        expired = leases.expire(session, now=utcnow() + timedelta(hours=1))
    assert (expired.requeued, expired.failed) == (1, 1)
    after = scrape(api)
    for outcome in ("requeued", "failed"):
        labels = {"outcome": outcome}
        gained = value(after, "farmhand_lease_expiries_total", **labels) - value(
            before, "farmhand_lease_expiries_total", **labels
        )
        assert gained == 1, outcome


def test_agents_by_liveness(api: TestClient) -> None:
    _, draining, stale, stopped = (agent(api, n) for n in ("live", "drain", "stale", "stop"))
    assert api.post(f"{API}/agents/{draining}/drain").status_code == 200
    assert api.post(f"{API}/agents/{stopped}/stop").status_code == 200
    with api.app.state.db.write() as session:
        long_ago = utcnow() - timedelta(hours=2)
        session.execute(update(Agent).where(Agent.id == stale).values(last_heartbeat=long_ago))
    samples = scrape(api)
    assert value(samples, "farmhand_agents", status="live") == 1
    assert value(samples, "farmhand_agents", status="draining") == 1
    assert value(samples, "farmhand_agents", status="stale") == 1
