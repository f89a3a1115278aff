"""A submission creates its campaign in its own transaction, and a dry run keeps nothing: a
refused submission leaves no trace (issue 18, item 1)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import API, campaign

SHA = "ab" * 32


def campaigns(api: TestClient) -> list[str]:
    return [f"{c['name']}:{c['version']}" for c in api.get(f"{API}/campaigns").json()]


def records(api: TestClient) -> list[str]:
    return [r["key"] for r in api.get(f"{API}/records").json()["items"]]


def post(api: TestClient, *specs: dict[str, Any], **body: Any) -> Any:
    return api.post(f"{API}/records", json={"records": list(specs), **body})


def test_a_new_campaign_comes_with_its_records_in_one_transaction(api: TestClient) -> None:
    campaign(api, "md")
    r = post(
        api,
        {"key": "a", "command": "true", "run_args": {"timeout": "1h"}},
        campaign={"name": "md", "software": "lammps", "defaults": {"max_attempts": 2}},
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert (answer["created"], answer["dry_run"]) == (1, False)
    made = api.get(f"{API}/campaigns/{answer['created_campaign']}").json()
    assert (made["name"], made["version"], made["software"]) == ("md", 2, "lammps")
    assert made["counts"]["ready"] == 1
    into = post(api, {"key": "b", "command": "true"}, campaign_id=made["id"]).json()
    assert (into["created"], into["created_campaign"]) == (1, None)


REFUSED = {
    "unknown parent": ({"key": "a", "command": "x", "parents": ["ghost"]}, "unknown parents"),
    "max_attempts": (
        {"key": "a", "command": "x", "run_args": {"max_attempts": "two"}},
        "run_args.max_attempts must be a whole number >= 1, got 'two'",
    ),
    "timeout": (
        {"key": "a", "command": "x", "run_args": {"timeout": "soon"}},
        "run_args.timeout must be a positive duration",
    ),
    "memory": (
        {"key": "a", "command": "x", "run_args": {"memory": "lots"}},
        "run_args.memory must be MiB",
    ),
    "input not uploaded": (
        {"key": "a", "command": "x", "inputs": {"in.lmp": SHA}},
        "the server does not have these input snapshots",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_submission_creates_no_campaign(api: TestClient, case: str) -> None:
    spec, needle = REFUSED[case]
    r = post(api, {"key": "ok", "command": "true"}, spec, campaign={"name": "md"})
    assert r.status_code == 422 and needle in r.json()["detail"], r.text
    assert campaigns(api) == [] and records(api) == []


def test_a_dry_run_answers_what_would_happen_and_keeps_nothing(api: TestClient) -> None:
    c = campaign(api, "md")
    assert post(api, {"key": "a", "command": "old"}, campaign_id=c).status_code == 201
    specs = (
        {"key": "a", "command": "new"},
        {"key": "b", "command": "x", "parents": ["a"], "inputs": {"in.lmp": SHA}},
    )
    r = post(api, *specs, campaign_id=c, force=True, dry_run=True)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["created"], answer["replaced"], answer["replaced_keys"]) == (1, 1, ["a"])
    assert answer["dry_run"] is True
    assert records(api) == ["a"]
    assert api.get(f"{API}/records", params={"key": "a"}).json()["items"][0]["command"] == "old"
    # Into a new campaign: none is kept, and the answer has no id for it.
    r = post(api, {"key": "a", "command": "x"}, campaign={"name": "fresh"}, dry_run=True)
    assert (r.status_code, r.json()["created"], r.json()["created_campaign"]) == (200, 1, None)
    assert campaigns(api) == ["md:1"]
    # Refused in a dry run: the same 422 the submission would get.
    r = post(api, {"key": "c", "command": "x", "parents": ["ghost"]}, campaign_id=c, dry_run=True)
    assert r.status_code == 422 and "unknown parents 'ghost'" in r.json()["detail"]


def test_campaign_id_or_campaign(api: TestClient) -> None:
    c = campaign(api, "md")
    spec = {"key": "a", "command": "x"}
    for body in ({}, {"campaign_id": c, "campaign": {"name": "md"}}):
        r = post(api, spec, **body)
        assert r.status_code == 422 and "give either campaign_id or campaign" in r.text
    assert records(api) == []
