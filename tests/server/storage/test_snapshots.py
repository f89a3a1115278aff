"""Snapshot routes: streamed, verified uploads; HEAD; ranged downloads; lease-fenced agents."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from farmhand.client.transfer import LEASE_HEADER
from tests.server.helpers import API, blob_files, campaign, claim, kept_in_database, submit

DATA = b"the bytes of an input file\n" * 100
SHA = hashlib.sha256(DATA).hexdigest()
N = len(DATA)


def put(api: TestClient, data: bytes, sha: str | None = None, **headers: str):
    return api.put(
        f"{API}/snapshots/{sha or hashlib.sha256(data).hexdigest()}", content=data, headers=headers
    )


def test_upload_then_head_get_info_and_list(placed: TestClient, where: str) -> None:
    api = placed
    assert api.head(f"{API}/snapshots/{SHA}").status_code == 404
    made = put(api, DATA)
    assert made.status_code == 201, made.text
    assert made.json()["created"] is True
    assert made.json()["snapshot"] | {"created_at": None} == {
        "sha256": SHA,
        "size": len(DATA),
        "created_at": None,
        "references": 0,
    }
    head = api.head(f"{API}/snapshots/{SHA}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(DATA))
    got = api.get(f"{API}/snapshots/{SHA}")
    assert got.status_code == 200 and got.content == DATA
    assert got.headers["content-length"] == str(len(DATA))
    assert api.get(f"{API}/snapshots/{SHA}/info").json()["size"] == len(DATA)
    assert [s["sha256"] for s in api.get(f"{API}/snapshots").json()["items"]] == [SHA]
    if where == "database":  # no file at all, the staging file included
        assert blob_files(api) == [] and kept_in_database(api) == {SHA: DATA}
        return
    # The blob is stored once, read-only, under its sharded name; the staging area is empty.
    (blob,) = blob_files(api)
    assert blob.name == SHA and blob.parent.name == SHA[2:4] and blob.parent.parent.name == SHA[:2]
    assert blob.stat().st_mode & 0o222 == 0
    assert kept_in_database(api) == {}


def test_uploading_a_stored_snapshot_again_is_a_quick_success(placed: TestClient) -> None:
    api = placed
    assert put(api, DATA).status_code == 201
    again = put(api, DATA)
    assert again.status_code == 200 and again.json()["created"] is False
    assert len(blob_files(api)) + len(kept_in_database(api)) == 1


def test_only_snapshots_up_to_the_inline_size_are_kept_in_the_database(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(inline_snapshot_bytes=N)
    bigger = DATA + b"!"
    assert put(api, DATA).status_code == 201 and put(api, bigger).status_code == 201
    assert kept_in_database(api) == {SHA: DATA}
    assert [p.name for p in blob_files(api)] == [hashlib.sha256(bigger).hexdigest()]
    assert api.get(f"{API}/snapshots/{SHA}").content == DATA


def test_bytes_that_do_not_match_their_name_are_refused_and_not_kept(api: TestClient) -> None:
    wrong = put(api, DATA, sha="0" * 64)
    assert wrong.status_code == 400
    assert SHA in wrong.json()["detail"] and "nothing was kept" in wrong.json()["detail"]
    assert wrong.json()["code"] == "hash_mismatch"
    assert api.head(f"{API}/snapshots/{'0' * 64}").status_code == 404
    assert blob_files(api) == []
    assert api.get(f"{API}/snapshots").json()["items"] == []


@pytest.mark.parametrize("name", ["abc", "A" * 64, "g" * 64, SHA + "0"])
def test_a_name_that_is_not_a_sha256_is_a_422(api: TestClient, name: str) -> None:
    assert api.put(f"{API}/snapshots/{name}", content=b"x").status_code == 422
    assert api.get(f"{API}/snapshots/{name}").status_code == 422


def test_the_size_cap_refuses_big_uploads_with_413(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_snapshot_bytes=1000)
    declared = put(api, DATA)  # 2,700 bytes with a Content-Length
    assert declared.status_code == 413 and "1000" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap is enforced while streaming
        yield DATA[:900]
        yield DATA[900:]

    streamed = api.put(f"{API}/snapshots/{SHA}", content=chunks())
    assert streamed.status_code == 413
    assert blob_files(api) == [] and api.head(f"{API}/snapshots/{SHA}").status_code == 404


def test_snapshot_uploads_are_not_held_to_the_request_body_limit(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(max_body_bytes=1024)
    assert put(api, DATA).status_code == 201  # 2,700 bytes > 1,024
    records = {"campaign_id": 1, "records": [{"key": "k" * 200, "command": "x" * 2000}]}
    assert api.post(f"{API}/records", json=records).status_code == 413


@pytest.mark.parametrize(
    ("header", "status", "start", "end"),
    [
        ("bytes=2-5", 206, 2, 6),
        ("bytes=10-", 206, 10, N),
        ("bytes=-7", 206, N - 7, N),
        ("bytes=0-99999", 206, 0, N),
        ("bytes=0-1,4-5", 200, 0, N),  # several ranges: the whole snapshot
    ],
)
def test_range_requests(placed: TestClient, header: str, status: int, start: int, end: int) -> None:
    api = placed
    put(api, DATA)
    got = api.get(f"{API}/snapshots/{SHA}", headers={"Range": header})
    assert got.status_code == status
    assert got.content == DATA[start:end]
    assert got.headers["content-length"] == str(end - start)
    if status == 206:
        assert got.headers["content-range"] == f"bytes {start}-{end - 1}/{N}"


def test_a_range_outside_the_snapshot_is_416(api: TestClient) -> None:
    put(api, DATA)
    got = api.get(f"{API}/snapshots/{SHA}", headers={"Range": f"bytes={len(DATA)}-"})
    assert got.status_code == 416 and got.headers["content-range"] == f"bytes */{len(DATA)}"


def test_unknown_snapshots_are_404(api: TestClient) -> None:
    assert api.get(f"{API}/snapshots/{SHA}").status_code == 404
    assert api.get(f"{API}/snapshots/{SHA}/info").status_code == 404


def _agent_with_lease(api: TestClient) -> tuple[TestClient, dict]:
    token = api.post(f"{API}/tokens", json={"role": "agent"}).json()["token"]
    agent_api = TestClient(api.app, headers={"Authorization": f"Bearer {token}"})
    submit(api, campaign(api), "k")
    agent_id = agent_api.post(f"{API}/agents", json={"name": "a", "host": "h", "slots": 1})
    (lease,) = claim(agent_api, agent_id.json()["agent"]["id"])
    return agent_api, lease


def test_agents_upload_only_for_a_run_they_hold(api: TestClient) -> None:
    agent_api, lease = _agent_with_lease(api)
    bare = put(agent_api, DATA)
    assert bare.status_code == 403 and LEASE_HEADER in bare.json()["detail"]
    stale = put(agent_api, DATA, **{LEASE_HEADER: f"{lease['run_id']}:not-the-token"})
    assert stale.status_code == 409
    assert api.head(f"{API}/snapshots/{SHA}").status_code == 404
    held = put(agent_api, DATA, **{LEASE_HEADER: f"{lease['run_id']}:{lease['token']}"})
    assert held.status_code == 201
    # Reading is another matter: only what the agent's leases name (tests/server/
    # test_agent_tokens.py), not what it uploaded.
    assert agent_api.get(f"{API}/snapshots/{SHA}").status_code == 403


def test_checkpoints_attach_to_live_runs_only(api: TestClient) -> None:
    agent_api, lease = _agent_with_lease(api)
    run = lease["run_id"]
    body = {"token": lease["token"], "sha256": SHA}
    unknown = agent_api.post(f"{API}/runs/{run}/checkpoints", json=body)
    assert unknown.status_code == 422 and "upload it first" in unknown.json()["detail"]
    put(api, DATA)
    made = agent_api.post(f"{API}/runs/{run}/checkpoints", json=body)
    assert made.status_code == 201, made.text
    assert (made.json()["run_id"], made.json()["sha256"]) == (run, SHA)
    stale = agent_api.post(f"{API}/runs/{run}/checkpoints", json={**body, "token": "wrong"})
    assert stale.status_code == 409
    assert api.get(f"{API}/snapshots/{SHA}/info").json()["references"] == 1


def test_the_routes_work_the_same_on_an_s3_store(
    make_api: Callable[..., TestClient], s3_endpoint: str, bucket: str
) -> None:
    api = make_api(
        storage_url=f"s3://{bucket}/farm", s3_endpoint_url=s3_endpoint, inline_snapshot_bytes=0
    )
    assert put(api, DATA, sha="0" * 64).status_code == 400
    assert put(api, DATA).status_code == 201
    assert put(api, DATA).json()["created"] is False
    assert api.head(f"{API}/snapshots/{SHA}").headers["content-length"] == str(N)
    assert api.get(f"{API}/snapshots/{SHA}").content == DATA
    ranged = api.get(f"{API}/snapshots/{SHA}", headers={"Range": "bytes=5-9"})
    assert ranged.status_code == 206 and ranged.content == DATA[5:10]
    assert list(api.app.state.blobs.names()) == [SHA]  # the bad upload left nothing
