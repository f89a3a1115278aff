"""Archiving and deleting campaigns (issue 18 item 3), on both databases."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from tests.server.helpers import API, agent, campaign, claim, ids_by_key, record, submit
from tests.server.pages.test_pages import browser


def as_submitter(api: TestClient) -> TestClient:
    secret = api.post(f"{API}/tokens", json={"role": "submitter"}).json()["token"]
    return TestClient(api.app, headers={"Authorization": f"Bearer {secret}"})


def names(api: TestClient, **params: str) -> list[str]:
    r = api.get(f"{API}/campaigns", params=params)
    assert r.status_code == 200, r.text
    return [f"{c['name']}:{c['version']}" for c in r.json()]


def test_a_deleted_campaign_leaves_nothing_of_its_records_and_touches_no_other(
    api: TestClient,
) -> None:
    gone = campaign(api, "gone")
    blob = b"input bytes"
    sha = hashlib.sha256(blob).hexdigest()
    assert api.put(f"{API}/snapshots/{sha}", content=blob).status_code in (200, 201)
    records = [
        {"key": "a", "command": "true", "inputs": {"in.txt": sha}},
        {"key": "b", "command": "true", "parents": ["a"]},
        {"key": "c", "command": "true"},
    ]
    assert api.post(f"{API}/records", json={"campaign_id": gone, "records": records}).is_success
    keep = campaign(api, "keep")
    submit(api, keep, "k1", "k2")
    worker = agent(api)
    done = claim(api, worker, 1)[0]  # "a" (submitted first): done, with a checkpoint
    assert done["key"] == "a"
    body = {"token": done["token"], "sha256": sha}
    assert api.post(f"{API}/runs/{done['run_id']}/checkpoints", json=body).status_code == 201
    report = {"token": done["token"], "result": {"e": 1}}
    assert api.post(f"{API}/runs/{done['run_id']}/complete", json=report).status_code == 200
    next_one = api.post(f"{API}/campaigns", json={"name": "next", "based_on": "gone"}).json()
    kept_before = {k: record(api, i) for k, i in ids_by_key(api, keep).items()}

    r = api.delete(f"{API}/campaigns/{gone}")
    assert r.status_code == 200, r.text
    assert r.json() | {"campaign_id": 0} == {
        "campaign_id": 0,
        "name": "gone",
        "version": 1,
        "records": 3,
        "runs": 1,
        "cancelled": 0,
        "unlinked": ["next:1"],
    }
    assert api.get(f"{API}/campaigns/{gone}").status_code == 404
    assert api.get(f"{API}/records", params={"campaign_id": gone}).json()["items"] == []
    assert api.get(f"{API}/records/{done['record_id']}").status_code == 404
    assert api.get(f"{API}/runs", params={"record_id": done["record_id"]}).json()["items"] == []
    assert api.get(f"{API}/campaigns/{next_one['id']}").json()["based_on"] is None
    assert {k: record(api, i) for k, i in ids_by_key(api, keep).items()} == kept_before
    info = api.get(f"{API}/snapshots/{sha}/info").json()  # the bytes stay, unreferenced
    assert info["references"] == 0
    assert api.delete(f"{API}/campaigns/{gone}").status_code == 404


def test_live_runs_refuse_a_delete_unless_forced(api: TestClient) -> None:
    c = campaign(api, "busy")
    submit(api, c, "k1", "k2")
    worker = agent(api)
    (lease,) = claim(api, worker, 1)
    r = api.delete(f"{API}/campaigns/{c}")
    assert r.status_code == 409 and "1 live run(s)" in r.json()["detail"]
    assert "--force" in r.json()["detail"]
    assert record(api, lease["record_id"])["state"] == "claimed"  # nothing changed
    r = api.delete(f"{API}/campaigns/{c}", params={"force": "true"})
    assert r.status_code == 200 and r.json()["cancelled"] == 1 and r.json()["records"] == 2
    # The agent's heartbeat now hears the lease is gone.
    beat = api.post(f"{API}/agents/{worker}/heartbeat", json={"run_ids": [lease["run_id"]]})
    assert beat.json()["lost"] == [lease["run_id"]]


def test_records_of_other_campaigns_that_depend_on_it_refuse_a_delete(api: TestClient) -> None:
    upstream = campaign(api, "upstream")
    submit(api, upstream, "u")
    down = campaign(api, "down")
    (u,) = ids_by_key(api, upstream).values()
    records = [{"key": "d", "command": "true", "parents": [u]}]
    r = api.post(f"{API}/records", json={"campaign_id": down, "records": records})
    assert r.status_code == 201, r.text
    r = api.delete(f"{API}/campaigns/{upstream}", params={"force": "true"})
    assert r.status_code == 409 and "down:1 (1 record(s))" in r.json()["detail"]
    assert names(api) == ["upstream:1", "down:1"]


def test_only_the_token_that_created_it_or_an_admin_deletes_a_campaign(api: TestClient) -> None:
    alice, bob = as_submitter(api), as_submitter(api)
    made = alice.post(f"{API}/campaigns", json={"name": "alices"}).json()
    assert made["created_by"] is not None
    r = bob.delete(f"{API}/campaigns/{made['id']}")
    assert r.status_code == 403 and "token that created it" in r.json()["detail"]
    assert alice.delete(f"{API}/campaigns/{made['id']}").status_code == 200
    other = alice.post(f"{API}/campaigns", json={"name": "alices"}).json()
    assert api.delete(f"{API}/campaigns/{other['id']}").status_code == 200  # an admin
    # A campaign created with its records (`farmhand submit`) is its submitter's too.
    body = {"campaign": {"name": "submitted"}, "records": [{"key": "k", "command": "true"}]}
    r = alice.post(f"{API}/records", json=body)
    assert r.status_code == 201, r.text
    (submitted,) = [c for c in alice.get(f"{API}/campaigns").json() if c["name"] == "submitted"]
    assert bob.delete(f"{API}/campaigns/{submitted['id']}").status_code == 403
    assert alice.delete(f"{API}/campaigns/{submitted['id']}").json()["records"] == 1


def test_archived_campaigns_are_hidden_unless_asked_for(api: TestClient) -> None:
    old, new = campaign(api, "old"), campaign(api, "new")
    r = api.post(f"{API}/campaigns/{old}/archive")
    assert r.status_code == 200 and r.json()["archived_at"] is not None
    again = api.post(f"{API}/campaigns/{old}/archive").json()
    assert again["archived_at"] == r.json()["archived_at"]  # repeating keeps the first time
    assert names(api) == ["new:1"]
    assert names(api, archived="true") == ["old:1", "new:1"]
    assert names(api, name="old") == ["old:1"]  # a name finds it, archived or not
    submit(api, old, "still-runs")  # an archived campaign's records still run
    assert claim(api, agent(api), 1)[0]["record_id"] in ids_by_key(api, old).values()
    viewer = browser(api)
    page = viewer.get("/")
    assert page.status_code == 200, page.text
    assert "1 archived campaign</a> not shown" in page.text
    assert f'data-campaign="{old}"' not in page.text and f'data-campaign="{new}"' in page.text
    assert f'data-campaign="{old}"' in viewer.get("/", params={"archived": "1"}).text
    assert api.post(f"{API}/campaigns/{old}/unarchive").json()["archived_at"] is None
    assert names(api) == ["old:1", "new:1"]
    assert api.post(f"{API}/campaigns/{new + old + 1000}/archive").status_code == 404
