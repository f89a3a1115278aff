"""Agent tokens act only as the agents they registered, touch only those agents' runs, and
read only the snapshots their live leases name; the pages are not for them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from farmhand.client.transfer import LEASE_HEADER
from farmhand.server.pages.access import COOKIE, csrf_token
from tests.server.helpers import API, campaign, claim, ids_by_key, record, submit


@dataclass
class AgentToken:
    """An agent token, a client using it and the agent it registered."""

    api: TestClient
    agent_id: int


def agent_token(api: TestClient, name: str) -> AgentToken:
    secret = api.post(f"{API}/tokens", json={"role": "agent", "name": name}).json()["token"]
    client = TestClient(api.app, headers={"Authorization": f"Bearer {secret}"})
    r = client.post(f"{API}/agents", json={"name": name, "host": "h", "slots": 4})
    assert r.status_code == 201, r.text
    return AgentToken(client, r.json()["agent"]["id"])


def put(api: TestClient, data: bytes, **headers: str) -> str:
    sha = hashlib.sha256(data).hexdigest()
    r = api.put(f"{API}/snapshots/{sha}", content=data, headers=headers)
    assert r.status_code in (200, 201), r.text
    return sha


def states(api: TestClient, campaign_id: int) -> dict[str, str]:
    items = api.get(f"{API}/records", params={"campaign_id": campaign_id}).json()["items"]
    return {r["key"]: r["state"] for r in items}


def agent_row(api: TestClient, agent_id: int) -> dict[str, Any]:
    return next(a for a in api.get(f"{API}/agents").json() if a["id"] == agent_id)


def test_an_agent_token_acts_only_as_the_agents_it_registered(api: TestClient) -> None:
    a, b = agent_token(api, "a"), agent_token(api, "b")
    c = campaign(api)
    submit(api, c, "k1", "k2")
    (held,) = claim(a.api, a.agent_id)
    heartbeat = {"run_ids": [held["run_id"]]}
    for method, path, body in (
        ("post", "/leases", {"agent_id": a.agent_id, "max_records": 5}),
        ("post", f"/agents/{a.agent_id}/heartbeat", heartbeat),
        ("post", f"/agents/{a.agent_id}/drain", None),
        ("post", f"/agents/{a.agent_id}/stop", None),
    ):
        r = b.api.request(method, API + path, json=body)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["detail"].startswith(f"agent {a.agent_id} (a) was registered with another")
    # Nothing changed: one record is still ready, agent a active, its lease live.
    assert sorted(states(api, c).values()) == ["claimed", "ready"]
    assert agent_row(api, a.agent_id)["state"] == "active"
    assert record(api, held["record_id"])["state"] == "claimed"
    renewed = a.api.post(f"{API}/agents/{a.agent_id}/heartbeat", json=heartbeat)
    assert renewed.status_code == 200 and renewed.json()["renewed"] == 1
    # Each token acts as its own agents; an admin acts as any.
    assert len(claim(b.api, b.agent_id)) == 1
    assert api.post(f"{API}/agents/{a.agent_id}/stop").status_code == 200
    assert record(api, held["record_id"])["state"] == "ready"


def test_an_agent_token_cannot_touch_another_agents_runs(api: TestClient) -> None:
    a, b = agent_token(api, "a"), agent_token(api, "b")
    submit(api, campaign(api), "k")
    (lease,) = claim(a.api, a.agent_id)
    run, token = lease["run_id"], lease["token"]
    sha = put(api, b"a checkpoint")
    for path, body in (
        (f"/runs/{run}/start", {"token": token}),
        (f"/runs/{run}/complete", {"token": token, "exit_code": 0, "result": {"x": 1}}),
        (f"/runs/{run}/fail", {"token": token, "error": "boom"}),
        (f"/runs/{run}/release", {"token": token}),
        (f"/runs/{run}/orphan", {"token": token, "reason": "no runner"}),
        (f"/runs/{run}/checkpoints", {"token": token, "sha256": sha}),
    ):
        r = b.api.post(API + path, json=body)
        assert r.status_code == 403, (path, r.text)
        assert f"run {run} belongs to an agent registered with another token" in r.json()["detail"]
    r = b.api.post(f"{API}/runs/reports", json={"reports": [{"run_id": run, "token": token}]})
    assert r.status_code == 200
    (answer,) = r.json()["answers"]
    assert answer["error"]["code"] == "forbidden" and answer.get("ack") is None
    upload = b.api.put(
        f"{API}/snapshots/{hashlib.sha256(b'x').hexdigest()}",
        content=b"x",
        headers={LEASE_HEADER: f"{run}:{token}"},
    )
    assert upload.status_code == 403
    # Nothing changed; the run's own token still works.
    assert record(api, lease["record_id"])["state"] == "claimed"
    assert api.get(f"{API}/snapshots/{sha}/info").json()["references"] == 0
    r = a.api.post(f"{API}/runs/{run}/complete", json={"token": token, "result": {"x": 1}})
    assert r.status_code == 200 and r.json()["record_state"] == "done"


def test_agent_tokens_read_only_the_snapshots_their_leases_name(api: TestClient) -> None:
    a, b = agent_token(api, "a"), agent_token(api, "b")
    parents, children = campaign(api, "parents"), campaign(api, "children")
    submit(api, parents, "p")
    (parent,) = claim(api, b.agent_id)  # admin acts as b
    archive = put(api, b"the parent's archive")
    done = {"token": parent["token"], "result": {"p": 1}, "archive": archive}
    assert api.post(f"{API}/runs/{parent['run_id']}/complete", json=done).status_code == 200
    given, other = put(api, b"an input"), put(api, b"someone else's input")
    child = {"key": "c", "command": "true", "parents": [parent["record_id"]]}
    spec = {"campaign_id": children, "records": [{**child, "inputs": {"in.txt": given}}]}
    assert api.post(f"{API}/records", json=spec).status_code == 201
    r = a.api.post(f"{API}/leases", json={"agent_id": a.agent_id, "campaign_id": children})
    (lease,) = r.json()["leases"]
    assert lease["inputs"] == {"in.txt": given} and lease["parents"][0]["archive"] == archive
    mark = put(a.api, b"a checkpoint", **{LEASE_HEADER: f"{lease['run_id']}:{lease['token']}"})
    body = {"token": lease["token"], "sha256": mark}
    assert a.api.post(f"{API}/runs/{lease['run_id']}/checkpoints", json=body).status_code == 201
    ghost = hashlib.sha256(b"never stored").hexdigest()

    for sha in (given, archive, mark):
        assert a.api.get(f"{API}/snapshots/{sha}").status_code == 200
        assert a.api.get(f"{API}/snapshots/{sha}/info").status_code == 200
        assert a.api.head(f"{API}/snapshots/{sha}").status_code == 200
        for refused in (
            b.api.get(f"{API}/snapshots/{sha}"),
            b.api.get(f"{API}/snapshots/{sha}/info"),
        ):
            assert refused.status_code == 403
            assert "agent tokens read only what their leases need" in refused.json()["detail"]
        assert b.api.head(f"{API}/snapshots/{sha}").status_code == 404  # as if not stored
        assert api.get(f"{API}/snapshots/{sha}").status_code == 200
    # Unrelated or absent: refused alike, so an agent token cannot probe for existence.
    for sha in (other, ghost):
        assert a.api.get(f"{API}/snapshots/{sha}").status_code == 403
        assert a.api.get(f"{API}/snapshots/{sha}/info").status_code == 403
        assert a.api.head(f"{API}/snapshots/{sha}").status_code == 404
    # About to upload for its live run, it may ask whether the server has the bytes.
    mine = {LEASE_HEADER: f"{lease['run_id']}:{lease['token']}"}
    assert a.api.head(f"{API}/snapshots/{other}", headers=mine).status_code == 200
    assert a.api.head(f"{API}/snapshots/{ghost}", headers=mine).status_code == 404
    assert b.api.head(f"{API}/snapshots/{other}", headers=mine).status_code == 404
    assert a.api.get(f"{API}/snapshots").status_code == 403
    # Once the lease ends, so does the access.
    r = a.api.post(f"{API}/runs/{lease['run_id']}/complete", json={"token": lease["token"]})
    assert r.status_code == 200
    assert a.api.get(f"{API}/snapshots/{given}").status_code == 403


def test_agent_tokens_find_campaigns_for_farmhand_agent_campaign(api: TestClient) -> None:
    """`farmhand agent --campaign NAME` resolves the name with the agent's own token."""
    a = agent_token(api, "a")
    c = campaign(api, "relax")
    found = a.api.get(f"{API}/campaigns", params={"name": "relax"})
    assert found.status_code == 200 and [x["id"] for x in found.json()] == [c]
    assert a.api.get(f"{API}/campaigns/{c}").status_code == 200
    assert a.api.get(f"{API}/records").status_code == 403


def test_agent_tokens_cannot_use_the_pages(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "k")
    k = ids_by_key(api, c)["k"]
    secret = api.post(f"{API}/tokens", json={"role": "agent"}).json()["token"]
    client = TestClient(api.app, follow_redirects=False)
    r = client.post("/login", data={"token": secret, "next": "/"})
    assert r.status_code == 403 and "cannot use the pages" in r.text
    assert "set-cookie" not in r.headers
    client.cookies.set(COOKIE, secret)  # a session made before, or by hand
    for path in ("/", f"/campaigns/{c}", f"/records/{k}"):
        r = client.get(path)
        assert r.status_code == 403 and "cannot use the pages" in r.text, path
    assert client.post("/logout", data={"csrf": csrf_token(secret)}).status_code == 303
