"""What follows a record's end: children unblock, descendants fail upstream, orphans,
temporary run_args, claim filters, campaign finish."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from farmhand.server.routes import leases as lease_routes
from tests.server.catalog.submission.test_submit import by_key, post
from tests.server.helpers import API, agent, campaign, record


def claim_all(api: TestClient, agent_id: int, **filters: Any) -> list[dict[str, Any]]:
    r = api.post(f"{API}/leases", json={"agent_id": agent_id, "max_records": 100, **filters})
    assert r.status_code == 200, r.text
    return r.json()["leases"]


def finish(api: TestClient, lease: dict[str, Any], *, ok: bool = True, **result: Any) -> None:
    run = f"{API}/runs/{lease['run_id']}"
    if ok:
        r = api.post(f"{run}/complete", json={"token": lease["token"], "result": result})
    else:
        r = api.post(f"{run}/fail", json={"token": lease["token"], "error": "boom"})
    assert r.status_code == 200, r.text


def states(api: TestClient, campaign_id: int) -> dict[str, tuple[str, str | None]]:
    return {k: (v["state"], v["error"]) for k, v in by_key(api, campaign_id).items()}


DIAMOND = [
    {"key": "top", "command": "x"},
    {"key": "left", "command": "x", "parents": ["top"]},
    {"key": "right", "command": "x", "parents": ["top"]},
    {"key": "bottom", "command": "x", "parents": ["left", "right"]},
    {"key": "below", "command": "x", "parents": ["bottom"]},
    {"key": "aside", "command": "x", "parents": ["left"]},
]


def test_a_diamond_runs_in_order_and_a_failed_middle_fails_exactly_its_descendants(
    api: TestClient,
) -> None:
    c = campaign(api, max_attempts=1)
    post(api, c, *DIAMOND)
    a = agent(api)
    (top,) = claim_all(api, a)
    assert top["key"] == "top" and top["parents"] == []
    finish(api, top, energy=-1.5)
    middle = {lease["key"]: lease for lease in claim_all(api, a)}
    assert set(middle) == {"left", "right"}
    assert middle["left"]["parents"] == [
        {"record_id": top["record_id"], "key": "top", "result": {"energy": -1.5}, "archive": None}
    ]
    finish(api, middle["left"])
    (aside,) = claim_all(api, a)  # bottom still waits for right
    assert aside["key"] == "aside"
    finish(api, middle["right"], ok=False)
    assert states(api, c) == {
        "top": ("done", None),
        "left": ("done", None),
        "right": ("failed", "boom"),
        "bottom": ("failed", "upstream failed: right"),
        "below": ("failed", "upstream failed: right"),
        "aside": ("claimed", None),
    }
    retried = api.post(
        f"{API}/records/retry",
        json={"ids": [middle["right"]["record_id"]], "run_args": {"env": {"FIX": "1"}}},
    )
    assert retried.json()["reopened"] == 2
    (again,) = claim_all(api, a)
    assert again["key"] == "right" and again["run_args"]["env"] == {"FIX": "1"}
    finish(api, again)
    (bottom,) = claim_all(api, a)
    assert {p["key"] for p in bottom["parents"]} == {"left", "right"}
    finish(api, bottom)
    (below,) = claim_all(api, a)
    finish(api, below)
    finish(api, aside)
    assert {state for state, _ in states(api, c).values()} == {"done"}
    right = record(api, again["record_id"])
    assert right["temporary_run_args"] is None, "dropped once the record ended"
    assert [run["run_args"] for run in right["runs"]] == [None, {"env": {"FIX": "1"}}]
    assert api.get(f"{API}/campaigns/{c}").json()["finished_at"] is not None


def test_a_lost_lease_with_no_attempts_left_fails_the_descendants(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = campaign(api, max_attempts=1)
    post(api, c, {"key": "p", "command": "x"}, {"key": "k", "command": "x", "parents": ["p"]})
    a = agent(api)
    (lease,) = claim_all(api, a)
    assert record(api, lease["record_id"])["state"] == "claimed"
    # The claim route's clock, a second past the lease's end: claims expire lost leases
    # themselves, so the next one does.
    after = datetime.fromisoformat(lease["expires_at"]) + timedelta(seconds=1)
    monkeypatch.setattr(lease_routes, "utcnow", lambda: after)
    assert claim_all(api, a) == []
    lost = "lease lost and no attempts left (max_attempts reached)"
    assert states(api, c)["p"] == ("failed", lost)
    assert states(api, c)["k"] == ("failed", "upstream failed: p")


def test_an_orphan_keeps_its_reason_and_spends_no_attempt(api: TestClient) -> None:
    c = campaign(api)
    post(api, c, {"key": "o", "command": "x", "run_args": {"runner": "lammps"}})
    post(api, c, {"key": "child", "command": "x", "parents": ["o"]})
    (lease,) = claim_all(api, agent(api))
    body = {"token": lease["token"], "reason": "runner 'lammps' is unknown on node7"}
    r = api.post(f"{API}/runs/{lease['run_id']}/orphan", json=body)
    assert r.status_code == 200 and r.json()["record_state"] == "orphaned"
    assert api.post(f"{API}/runs/{lease['run_id']}/orphan", json=body).json() == r.json()
    got = record(api, lease["record_id"])
    assert (got["state"], got["attempts"]) == ("orphaned", 0)
    assert got["error"] == "orphaned: runner 'lammps' is unknown on node7"
    assert got["runs"][0]["state"] == "orphaned"
    assert states(api, c)["child"] == ("waiting", None)
    assert api.get(f"{API}/campaigns/{c}").json()["finished_at"] is None
    r = api.post(f"{API}/records/retry", json={"orphans": True, "campaign_id": c})
    assert r.json()["changed"] == [lease["record_id"]]
    assert states(api, c)["o"] == ("ready", None)


def test_claims_filter_by_campaign_and_dataset(api: TestClient) -> None:
    c1, c2 = campaign(api, "one"), campaign(api, "two")
    post(api, c1, {"key": "a1", "command": "x", "dataset": "a"}, {"key": "b1", "command": "x"})
    post(api, c2, {"key": "a2", "command": "x", "dataset": "a", "tags": ["z", "y"]})
    a = agent(api)
    assert [x["key"] for x in claim_all(api, a, datasets=["a"], campaign_ids=[c2])] == ["a2"]
    assert [x["key"] for x in claim_all(api, a, datasets=["b"])] == []
    assert [x["key"] for x in claim_all(api, a, datasets=["a"])] == ["a1"]
    assert [x["key"] for x in claim_all(api, a, campaign_id=c1)] == ["b1"]
    listed = api.get(f"{API}/records", params={"dataset": "a"}).json()["items"]
    assert [(r["key"], r["tags"]) for r in listed] == [("a1", []), ("a2", ["y", "z"])]


def test_finished_at_is_set_by_the_last_end_and_cleared_by_new_work(api: TestClient) -> None:
    c = campaign(api)
    post(api, c, {"key": "k", "command": "x"})
    (lease,) = claim_all(api, agent(api))
    assert api.get(f"{API}/campaigns/{c}").json()["finished_at"] is None
    finish(api, lease)
    assert api.get(f"{API}/campaigns/{c}").json()["finished_at"] is not None
    post(api, c, {"key": "k2", "command": "x"})
    assert api.get(f"{API}/campaigns/{c}").json()["finished_at"] is None


def test_claims_match_runners_and_the_free_share(api: TestClient) -> None:
    c = campaign(api)
    post(
        api,
        c,
        {"key": "md", "command": "x", "run_args": {"runner": "lammps"}},
        {"key": "gpu2", "command": "x", "run_args": {"gpus": 2, "memory": "8G"}},
        {"key": "wide", "command": "x", "run_args": {"cores": 16}},
        {"key": "plain", "command": "x"},
    )
    a = agent(api)
    small = {"cores": 4, "gpus": 1, "memory_mb": 65536}
    got = claim_all(api, a, runners=["subprocess"], free=small)
    assert [x["key"] for x in got] == ["plain"]
    big = {"cores": 32, "gpus": 2, "memory_mb": 4096}  # gpu2 wants 8 GiB
    assert [x["key"] for x in claim_all(api, a, runners=["subprocess"], free=big)] == ["wide"]
    got = claim_all(api, a, runners=["lammps", "subprocess"], free={**big, "memory_mb": 8192})
    assert sorted(x["key"] for x in got) == ["gpu2", "md"]


def test_claims_match_the_walltime_left(api: TestClient) -> None:
    c = campaign(api)
    post(
        api,
        c,
        {"key": "long", "command": "x", "run_args": {"walltime": 200}, "priority": 9},
        {"key": "short", "command": "x", "run_args": {"walltime": 50}},
        {"key": "open", "command": "x"},
    )
    a = agent(api)
    got = claim_all(api, a, walltime_left=100)
    assert sorted(x["key"] for x in got) == ["open", "short"]
    assert claim_all(api, a, walltime_left=100) == []  # "long" is never handed to it
    assert [x["key"] for x in claim_all(api, a, walltime_left=300)] == ["long"]
