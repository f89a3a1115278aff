"""Cancel and retry by filter (campaign, state, dataset, params), page after page, on both
databases: what changes, what is skipped and why, and nothing outside the filter."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import API, agent, campaign, counts, ids_by_key, record


@pytest.fixture
def eos(api: TestClient) -> int:
    other = campaign(api, "other")  # ids differ between tables; a campaign left alone
    body = {"campaign_id": other, "records": [{"key": "o", "command": "x", "params": {"T": 900}}]}
    assert api.post(f"{API}/records", json=body).status_code == 201
    c = campaign(api, "eos", max_attempts=1)
    records = [
        {"key": f"T{T}-{i}", "command": "x", "params": {"T": T}, "dataset": f"d{i % 2}"}
        for T in (300, 600, 900)
        for i in range(4)
    ]
    assert (
        api.post(f"{API}/records", json={"campaign_id": c, "records": records}).status_code == 201
    )
    body = {"agent_id": agent(api), "max_records": 6, "campaign_id": c}
    for lease in api.post(f"{API}/leases", json=body).json()["leases"]:  # T300-*, T600-0, -1 fail
        body = {"token": lease["token"], "error": "boom", "exit_code": 1}
        assert api.post(f"{API}/runs/{lease['run_id']}/fail", json=body).status_code == 200
    return c


def act(api: TestClient, verb: str, **chosen: Any) -> dict[str, Any]:
    """Post the filter page after page, as the client's act_by_filter does; answers summed."""
    total: dict[str, Any] = {"changed": [], "skipped": [], "pages": 0}
    chosen = dict(chosen)
    while True:
        r = api.post(f"{API}/records/{verb}", json={"filter": chosen})
        assert r.status_code == 200, r.text
        answer = r.json()
        total["changed"] += answer["changed"]
        total["skipped"] += answer["skipped"]
        total["pages"] += 1
        if answer["next"] is None:
            return total
        chosen["after"] = answer["next"]


def test_retry_by_state_and_params_in_pages(
    api: TestClient, eos: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from farmhand.server.catalog import walk

    monkeypatch.setattr(walk, "BULK_PAGE", 2)
    ids = ids_by_key(api, eos)
    got = act(api, "retry", campaign_id=eos, state="failed", where=["T>=600"])
    assert sorted(got["changed"]) == sorted([ids["T600-0"], ids["T600-1"]])
    assert got["skipped"] == [] and got["pages"] >= 1
    assert all(record(api, ids[k])["state"] == "ready" for k in ("T600-0", "T600-1"))
    assert all(record(api, ids[f"T300-{i}"])["state"] == "failed" for i in range(4))
    # Without a state, records that are not failed are skipped, each with the reason.
    got = act(api, "retry", campaign_id=eos, where=["T=300"], dataset="d0")
    assert sorted(got["changed"]) == sorted([ids["T300-0"], ids["T300-2"]])
    got = act(api, "retry", campaign_id=eos, where=["T=900"])
    assert got["changed"] == [] and len(got["skipped"]) == 4 and got["pages"] == 2
    assert {s["reason"] for s in got["skipped"]} == {"is ready; re-queue it anyway with --force"}


def test_cancel_by_filter_skips_what_ended_and_leaves_other_campaigns(
    api: TestClient, eos: int
) -> None:
    ids = ids_by_key(api, eos)
    got = act(api, "cancel", campaign_id=eos, where=["T>=600"])
    cancelled = {k for k, i in ids.items() if i in got["changed"]}
    assert cancelled == {f"T{T}-{i}" for T in (600, 900) for i in range(4)} - {"T600-0", "T600-1"}
    assert {s["key"]: s["reason"] for s in got["skipped"]} == {
        "T600-0": "is failed: nothing to cancel", "T600-1": "is failed: nothing to cancel",
    }  # fmt: skip
    assert counts(api, eos) == {"failed": 6, "cancelled": 6}
    (other,) = [c for c in api.get(f"{API}/campaigns").json() if c["name"] == "other"]
    assert {k: v for k, v in other["counts"].items() if v} == {"ready": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filter": {"campaign_id": 1, "where": ["T>>1"]}}, "is not NAME OP VALUE"),
        ({"filter": {"campaign_id": 1}, "ids": [1]}, "either ids or a filter"),
        ({}, "either ids or a filter"),
        ({"filter": {"campaign_id": 1, "state": "finished"}}, "state"),
    ],
)
def test_a_bad_filter_changes_nothing(
    api: TestClient, eos: int, body: dict[str, Any], message: str
) -> None:
    before = counts(api, eos)
    r = api.post(f"{API}/records/cancel", json=body)
    assert r.status_code == 422 and message in r.text, r.text
    r = api.post(f"{API}/records/retry", json={"filter": {"campaign_id": eos, "where": ["x>1"]}})
    assert r.status_code == 422 and "no record of campaign" in r.text
    assert counts(api, eos) == before
