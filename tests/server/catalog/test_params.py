"""Record params: stored and returned, handed to the lease, named on the campaign, and the
`where` filters over them — typed, on both databases, and loud about typos."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import API, agent, campaign, claim, ids_by_key, record

GRID = [
    {"key": f"a{a}-T{T}", "command": "relax", "params": {"a": a, "T": T}}
    for a in (4.0, 4.05, 4.1)
    for T in (300, 600, 900)
]
ODD = [
    {"key": "text-T", "command": "x", "params": {"T": "600", "phase": "fcc", "relaxed": True}},
    {"key": "bcc", "command": "x", "params": {"phase": "bcc", "relaxed": False}},
    {"key": "none", "command": "x"},
]


def post(api: TestClient, campaign_id: int, records: list[dict[str, Any]]) -> Any:
    return api.post(f"{API}/records", json={"campaign_id": campaign_id, "records": records})


def keys_where(api: TestClient, campaign_id: int | None, *where: str) -> set[str]:
    query: dict[str, Any] = {"where": list(where), "limit": 1000}
    if campaign_id is not None:
        query["campaign_id"] = campaign_id
    r = api.get(f"{API}/records", params=query)
    assert r.status_code == 200, r.text
    return {item["key"] for item in r.json()["items"]}


@pytest.fixture
def grid(api: TestClient) -> int:
    campaign(api, "other")  # campaign ids differ from record ids
    c = campaign(api, "eos")
    assert post(api, c, GRID + ODD).status_code == 201
    return c


def test_params_are_stored_returned_and_named_on_the_campaign(api: TestClient, grid: int) -> None:
    ids = ids_by_key(api, grid)
    assert record(api, ids["a4.05-T600"])["params"] == {"T": 600, "a": 4.05}
    assert record(api, ids["text-T"])["params"] == {"T": "600", "phase": "fcc", "relaxed": True}
    assert record(api, ids["none"])["params"] == {}
    got = api.get(f"{API}/campaigns/{grid}").json()
    assert got["params"] == ["T", "a", "phase", "relaxed"]


def test_a_lease_carries_the_params(api: TestClient, grid: int) -> None:
    leases = claim(api, agent(api), n=20)
    by_key = {lease["key"]: lease["params"] for lease in leases}
    assert by_key["a4.1-T900"] == {"T": 900, "a": 4.1}
    assert by_key["bcc"] == {"phase": "bcc", "relaxed": False}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["T>=600"], {f"a{a}-T{T}" for a in (4.0, 4.05, 4.1) for T in (600, 900)}),
        (["a=4.05"], {f"a4.05-T{T}" for T in (300, 600, 900)}),
        (["a==4.05", "T<600"], {"a4.05-T300"}),
        (["T=600"], {"a4.0-T600", "a4.05-T600", "a4.1-T600"}),  # not the string "600"
        (["T='600'"], {"text-T"}),
        (["T=600.0"], {"a4.0-T600", "a4.05-T600", "a4.1-T600"}),
        (["a!=4.05", "T>600"], {"a4.0-T900", "a4.1-T900"}),
        (["phase=fcc"], {"text-T"}),
        (["phase>=bcc"], {"bcc", "text-T"}),
        (["relaxed=true"], {"text-T"}),
        (["relaxed!=true"], {"bcc"}),  # a record without it does not match either
        (["relaxed=false"], {"bcc"}),
        (["T>1e3"], set()),
    ],
)
def test_where_filters_by_type_and_value(
    api: TestClient, grid: int, where: list[str], expected: set[str]
) -> None:
    assert keys_where(api, grid, *where) == expected


def test_where_without_a_campaign_reads_every_campaign(api: TestClient, grid: int) -> None:
    c2 = campaign(api, "second")
    post(api, c2, [{"key": "x", "command": "x", "params": {"T": 900}}])
    assert len(keys_where(api, None, "T>=900")) == 4


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("Tt>=600", "no record of campaign"),
        ("T>>600", "is not NAME OP VALUE"),
        ("T>=", "has no value"),
        ("relaxed>true", "booleans compare only"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(
    api: TestClient, grid: int, where: str, message: str
) -> None:
    r = api.get(f"{API}/records", params={"campaign_id": grid, "where": where})
    assert r.status_code == 422, r.text
    assert message in r.text and where.split(">")[0] in r.text


@pytest.mark.parametrize(
    "params",
    [
        {"T-1": 3},
        {"1a": 3},
        {"T": [300]},
        {"T": {"v": 1}},
        {"T": None},
        {f"p{i}": i for i in range(65)},
        {"big": 2**64},
    ],
)
def test_bad_params_are_refused_and_nothing_is_created(
    api: TestClient, params: dict[str, Any]
) -> None:
    c = campaign(api)
    r = post(
        api, c, [{"key": "ok", "command": "x"}, {"key": "k", "command": "x", "params": params}]
    )
    assert r.status_code == 422, r.text
    assert "params" in r.text
    assert ids_by_key(api, c) == {}
    assert api.get(f"{API}/campaigns/{c}").json()["params"] == []


def test_a_forced_submission_replaces_params(api: TestClient, grid: int) -> None:
    new = {"key": "bcc", "command": "x", "params": {"phase": "hcp", "c": 1.6}}
    r = api.post(f"{API}/records", json={"campaign_id": grid, "records": [new], "force": True})
    assert r.status_code == 201 and r.json()["replaced"] == 1, r.text
    assert record(api, ids_by_key(api, grid)["bcc"])["params"] == {"c": 1.6, "phase": "hcp"}
    assert api.get(f"{API}/campaigns/{grid}").json()["params"] == [
        "T",
        "a",
        "c",
        "phase",
        "relaxed",
    ]


def test_a_filtered_listing_looks_at_a_bounded_window_per_page(
    api: TestClient, grid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Params have no index: each page reads at most WHERE_WINDOW ids past its cursor and may
    come back short (even empty) with a `next`; following `next` finds every match once."""
    from farmhand.server.catalog import records

    monkeypatch.setattr(records, "WHERE_WINDOW", 4)
    found, pages, after = [], 0, None
    while True:
        query: dict[str, Any] = {"campaign_id": grid, "where": "T>=600", "limit": 2}
        if after is not None:
            query["after"] = after
        page = api.get(f"{API}/records", params=query).json()
        found += [item["key"] for item in page["items"]]
        pages += 1
        assert len(page["items"]) <= 2
        if page["next"] is None:
            break
        after = page["next"]
    assert sorted(found) == sorted(f"a{a}-T{T}" for a in (4.0, 4.05, 4.1) for T in (600, 900))
    assert len(found) == len(set(found)) and pages >= 12 // 4
