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


@pytest.fixture
def tagged(api: TestClient) -> int:
    """Keys with shared prefixes (and `_`, `%`, which LIKE would read as wildcards), tags."""
    c = campaign(api, "tagged")
    records = [
        {"key": key, "command": "x", "tags": tags, "params": {"T": T}}
        for key, tags, T in [
            ("relax-010", ["hot", "Al"], 300),
            ("relax-011", ["Al"], 600),
            ("relax-02", ["hot"], 600),
            ("relax_1", ["hot"], 900),
            ("relaxed", ["hot_"], 900),
            ("r%x", [], 300),
        ]
    ]
    r = api.post(f"{API}/records", json={"campaign_id": c, "records": records})
    assert r.status_code == 201, r.text
    return c


def test_count_and_act_by_key_prefix_and_tag_alike(api: TestClient, tagged: int) -> None:
    ids = ids_by_key(api, tagged)

    def count(**chosen: Any) -> dict[str, Any]:
        r = api.post(f"{API}/records/count", json={"campaign_id": tagged, **chosen})
        assert r.status_code == 200, r.text
        return r.json()

    assert count() == {"total": 6, "states": {"ready": 6}, "last": max(ids.values())}
    assert count(key_prefix="relax-01")["total"] == 2
    assert count(key_prefix="relax_")["total"] == 1  # `_` is a character, not a wildcard
    assert count(key_prefix="r%")["total"] == 1
    assert count(tag="hot")["total"] == 3  # not `hot_`
    assert count(tag="hot", key_prefix="relax-0", where=["T>=600"]) == {
        "total": 1, "states": {"ready": 1}, "last": ids["relax-02"],
    }  # fmt: skip
    assert count(tag="nothing") == {"total": 0, "states": {}, "last": None}
    got = act(api, "cancel", campaign_id=tagged, tag="hot", key_prefix="relax-0")
    assert sorted(got["changed"]) == sorted([ids["relax-010"], ids["relax-02"]])
    assert count(state="cancelled")["total"] == 2
    got = act(api, "retry", campaign_id=tagged, key_prefix="relax-01")
    assert got["changed"] == [ids["relax-010"]]
    assert [s["key"] for s in got["skipped"]] == ["relax-011"]
    assert count(state="ready")["total"] == 5


@pytest.mark.parametrize(
    ("chosen", "message"),
    [
        ({"key_prefix": ""}, "key_prefix"),
        ({"key_prefix": "x" * 257}, "key_prefix"),
        ({"tag": "no spaces"}, "tag"),
        ({"tag": "a\u0000"}, "tag"),
        ({"where": ["T>>1"]}, "is not NAME OP VALUE"),
        ({"where": ["nope=1"]}, "no record of campaign"),
        ({"state": "finished"}, "state"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_count_or_bulk_filter_is_a_422_and_changes_nothing(
    api: TestClient, tagged: int, chosen: dict[str, Any], message: str
) -> None:
    before = counts(api, tagged)
    chosen = {"campaign_id": tagged, **chosen}
    for path, body in (("count", chosen), ("cancel", {"filter": chosen})):
        r = api.post(f"{API}/records/{path}", json=body)
        assert r.status_code == 422 and message in r.text, r.text
    assert counts(api, tagged) == before


def test_counting_an_unknown_campaign_is_a_404(api: TestClient) -> None:
    r = api.post(f"{API}/records/count", json={"campaign_id": 999_999})
    assert r.status_code == 404 and "999999" in r.text
