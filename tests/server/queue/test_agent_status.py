"""Agents report a status with their heartbeat; the server keeps the last one and lists it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.server.helpers import API, agent


def _agents(api: TestClient) -> dict[int, dict]:
    return {a["id"]: a for a in api.get(f"{API}/agents").json()}


def test_heartbeat_status_is_kept_and_listed(api: TestClient) -> None:
    a = agent(api)
    assert _agents(api)[a]["status"] is None  # nothing reported yet
    paused = {"paused": "disk /scratch 93% used (limit 90%)", "disk_used_percent": 93.0}
    beat = api.post(f"{API}/agents/{a}/heartbeat", json={"run_ids": [], "status": paused})
    assert beat.status_code == 200, beat.text
    status = _agents(api)[a]["status"]
    assert status == {**paused, "walltime_left": None, "outbox": 0, "broken_runners": {}}

    # A heartbeat without a status (an older agent) leaves the last one in place...
    assert api.post(f"{API}/agents/{a}/heartbeat", json={"run_ids": []}).status_code == 200
    assert _agents(api)[a]["status"]["paused"] == paused["paused"]
    # ...and a new one replaces it: the agent resumed.
    resumed = {"disk_used_percent": 40.5, "outbox": 3}
    api.post(f"{API}/agents/{a}/heartbeat", json={"run_ids": [], "status": resumed})
    status = _agents(api)[a]["status"]
    assert (status["paused"], status["disk_used_percent"], status["outbox"]) == (None, 40.5, 3)


def test_status_fields_a_newer_agent_adds_do_not_cost_it_its_heartbeat(api: TestClient) -> None:
    a = agent(api)
    status = {"outbox": 1, "gpu_temperature": 71}
    beat = api.post(f"{API}/agents/{a}/heartbeat", json={"run_ids": [], "status": status})
    assert beat.status_code == 200, beat.text
    assert _agents(api)[a]["status"]["outbox"] == 1


def test_impossible_status_is_refused(api: TestClient) -> None:
    a = agent(api)
    bad = {"run_ids": [], "status": {"disk_used_percent": 130}}
    answer = api.post(f"{API}/agents/{a}/heartbeat", json=bad)
    assert answer.status_code == 422
    assert "status.disk_used_percent" in answer.json()["detail"]


def test_claim_takes_the_time_an_agent_has_left(api: TestClient) -> None:
    a = agent(api)
    ok = api.post(f"{API}/leases", json={"agent_id": a, "walltime_left": 3600.0})
    assert ok.status_code == 200, ok.text
    bad = api.post(f"{API}/leases", json={"agent_id": a, "walltime_left": -5})
    assert bad.status_code == 422 and "walltime_left" in bad.json()["detail"]
