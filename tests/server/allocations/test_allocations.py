"""/api/v1/allocations on both backends: the backlog by need, the autoscaler lease (acquire,
renew, release, 409 for the loser, expiry), allocations fenced by its token, and the agents
each job started (found by their registration labels)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient

from farmhand import wire
from farmhand.server.allocations import jobs
from farmhand.server.db import Database
from farmhand.server.errors import Conflict
from farmhand.server.routes.deps import get_now
from tests.server.helpers import API, campaign, submit
from tests.server.queue.test_locking import blocked_on_a_lock

SCALERS = f"{API}/allocations/autoscalers"


def _ok(r: Any, code: int = 200) -> Any:
    assert r.status_code == code, r.text
    return r.json()


def acquire(api: TestClient, name: str = "slurm:campaign=1", ttl: float = 60) -> str:
    body = {"holder": "login1:42", "ttl": ttl}
    return _ok(api.post(f"{SCALERS}/{name}/acquire", json=body))["token"]


def test_backlog_groups_ready_records_by_need_with_filters(api: TestClient) -> None:
    one, two = campaign(api, "one"), campaign(api, "two")
    submit(api, one, "a", "b", "c")
    submit(api, one, "g1", "g2", gpus=4, walltime="2h")
    submit(api, one, "big", cores=8, memory="4G", runner="lammps")
    submit(api, two, "x")
    records = [{"key": "d", "command": "true", "dataset": "fcc"}]
    _ok(api.post(f"{API}/records", json={"campaign_id": two, "records": records}), 201)

    everything = _ok(api.get(f"{API}/allocations/backlog"))
    assert everything["ready"] == 8 and everything["other"] == 0
    groups = [{k: v for k, v in g.items() if v is not None} for g in everything["groups"]]
    assert groups[0] == {"runner": "subprocess", "count": 5}  # largest first
    assert {"runner": "subprocess", "gpus": 4, "walltime": 7200.0, "count": 2} in groups
    assert {"runner": "lammps", "cores": 8.0, "memory_mb": 4096, "count": 1} in groups
    mine = _ok(api.get(f"{API}/allocations/backlog", params={"campaign_id": one}))
    assert mine["ready"] == 6 and len(mine["groups"]) == 3
    fcc = _ok(api.get(f"{API}/allocations/backlog", params={"dataset": "fcc"}))
    assert fcc["ready"] == 1 and fcc["groups"][0]["count"] == 1
    nothing = _ok(api.get(f"{API}/allocations/backlog", params={"campaign_id": 999}))
    assert nothing == {"ready": 0, "groups": [], "other": 0}


def test_one_autoscaler_per_name_until_its_lease_ends(api: TestClient) -> None:
    token = acquire(api)
    loser = api.post(f"{SCALERS}/slurm:campaign=1/acquire", json={"holder": "b:1", "ttl": 60})
    assert loser.status_code == 409 and "held by login1:42" in loser.json()["detail"]
    acquire(api, "slurm:campaign=2")  # another name: its own lease
    renewed = {"token": token, "ttl": 60, "status": {"idle": True, "message": "idle"}}
    _ok(api.post(f"{SCALERS}/slurm:campaign=1/renew", json=renewed))
    stale = api.post(f"{SCALERS}/slurm:campaign=1/renew", json={**renewed, "token": "nope"})
    assert stale.status_code == 409
    _ok(api.post(f"{SCALERS}/slurm:campaign=1/release", json={"token": token}))
    again = acquire(api)  # released: free at once
    assert again != token
    listed = _ok(api.get(f"{API}/allocations"))
    (scaler,) = [s for s in listed["autoscalers"] if s["name"] == "slurm:campaign=1"]
    assert scaler["status"] == {"idle": True, "message": "idle"} and scaler["token"] is None


def test_an_expired_lease_goes_to_the_next_and_fences_the_old_holder(api: TestClient) -> None:
    old = acquire(api, ttl=30)
    later = datetime.now(timezone.utc) + timedelta(seconds=31)
    api.app.dependency_overrides[get_now] = lambda: later
    try:
        job = {"autoscaler": "slurm:campaign=1", "scheduler": "slurm", "job_id": "7"}
        late = api.post(f"{API}/allocations", json={**job, "token": old})
        assert late.status_code == 409  # ran out, even before anyone took it over
        new = acquire(api)
        refused = api.post(f"{API}/allocations", json={**job, "token": old})
        assert refused.status_code == 409 and "not yours" in refused.json()["detail"]
        _ok(api.post(f"{API}/allocations", json={**job, "token": new}), 201)
    finally:
        api.app.dependency_overrides.clear()


def test_allocations_are_recorded_updated_and_listed_with_their_agents(api: TestClient) -> None:
    token = acquire(api)
    job = {
        "autoscaler": "slurm:campaign=1",
        "token": token,
        "scheduler": "slurm",
        "job_id": "4242",
        "submitted_for": {"records": 40, "cores": 2},
    }
    made = _ok(api.post(f"{API}/allocations", json=job), 201)
    assert made["state"] == "pending" and made["submitted_for"] == {"records": 40, "cores": 2}
    twice = api.post(f"{API}/allocations", json=job)
    assert twice.status_code == 409 and "already allocation" in twice.json()["detail"]
    agent = {"name": "n1-job4242", "host": "n1", "slots": 2, "labels": {"slurm_job": "4242"}}
    _ok(api.post(f"{API}/agents", json=agent), 201)
    other = {"name": "n1-job5", "host": "n1", "slots": 2, "labels": {"slurm_job": "5"}}
    _ok(api.post(f"{API}/agents", json=other), 201)

    path = f"{API}/allocations/{made['id']}"
    running = _ok(api.patch(path, json={"token": token, "state": "running"}))
    assert running["state"] == "running" and running["agents"] == ["n1-job4242 (active)"]
    assert api.patch(path, json={"token": "stale", "state": "ended"}).status_code == 409
    assert (
        api.patch(f"{API}/allocations/999", json={"token": token, "state": "ended"}).status_code
        == 404
    )
    live = _ok(api.get(f"{API}/allocations", params={"live": True}))["allocations"]
    assert [a["job_id"] for a in live] == ["4242"]
    _ok(api.patch(path, json={"token": token, "state": "ended", "note": "done"}))
    assert _ok(api.get(f"{API}/allocations", params={"live": True}))["allocations"] == []
    (ended,) = _ok(api.get(f"{API}/allocations", params={"autoscaler": "slurm:campaign=1"}))[
        "allocations"
    ]
    assert (ended["state"], ended["note"], ended["agents"]) == (
        "ended",
        "done",
        ["n1-job4242 (active)"],
    )


def test_agent_tokens_cannot_touch_allocations(api: TestClient) -> None:
    made = _ok(api.post(f"{API}/tokens", json={"role": "agent"}), 201)
    as_agent = TestClient(api.app, headers={"Authorization": f"Bearer {made['token']}"})
    body = {"holder": "x", "ttl": 10}
    assert as_agent.post(f"{SCALERS}/slurm/acquire", json=body).status_code == 403
    assert as_agent.get(f"{API}/allocations").status_code == 403
    assert as_agent.get(f"{API}/allocations/backlog").status_code == 403


def test_odd_tokens_and_documents_are_refused_not_a_server_error(api: TestClient) -> None:
    acquire(api)
    name = f"{SCALERS}/slurm:campaign=1"
    odd = api.post(f"{name}/renew", json={"token": "jötun", "ttl": 5})
    assert odd.status_code == 409  # found by schemathesis: compare_digest refused non-ASCII
    nul = api.post(f"{name}/renew", json={"token": "x", "ttl": 5, "status": {"m": "a\x00b"}})
    assert nul.status_code == 422


def test_two_first_acquires_of_a_name_racing_give_one_lease_and_one_409(db: Database) -> None:
    """Two transactions: the second blocks behind the first (PostgreSQL on the primary key,
    SQLite on the write lock) and then loses with a Conflict, not an integrity error."""
    now = datetime.now(timezone.utc)
    body = wire.AutoscalerAcquire(holder="h", ttl=60)
    first_holds, outcome = threading.Event(), {}

    def second() -> None:
        first_holds.wait(10)
        try:
            with db.write() as session:
                jobs.acquire(session, name="race", body=body, now=now)
            outcome["second"] = "acquired"
        except Conflict as exc:
            outcome["second"] = exc.message

    other = threading.Thread(target=second)
    other.start()
    with db.write() as session:
        jobs.acquire(session, name="race", body=body, now=now)
        first_holds.set()
        deadline = time.monotonic() + 10
        while not blocked_on_a_lock(db, other):
            assert time.monotonic() < deadline, "the second acquire never waited"
            time.sleep(0.01)
    other.join(10)
    lost = "was just taken" if db.dialect == "postgresql" else "is held by h"
    assert lost in outcome["second"], outcome
