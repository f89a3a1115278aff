"""POST /snapshots/batch: many small snapshots in one request, each verified, fenced and
answered on its own; a body that does not frame is refused whole and keeps nothing."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from farmhand import wire
from tests.server.helpers import API, blob_files, campaign, claim, kept_in_database, submit

A, B, C = b"first archive\n" * 10, b"second archive\n" * 20, b"third\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body(*parts: tuple[bytes, dict], header: dict | None = None) -> bytes:
    """A batch body: the header line, then each part's bytes."""
    specs = [{"sha256": sha(data), "size": len(data), **extra} for data, extra in parts]
    head = json.dumps(header if header is not None else {"parts": specs}).encode()
    return head + b"\n" + b"".join(data for data, _ in parts)


def post(api: TestClient, content: bytes):
    headers = {"Content-Type": wire.BATCH_MEDIA_TYPE}
    return api.post(f"{API}/snapshots/batch", content=content, headers=headers)


def stored(api: TestClient) -> set[str]:
    return {s["sha256"] for s in api.get(f"{API}/snapshots").json()["items"]}


def test_a_batch_stores_each_part_and_says_which_were_new(placed: TestClient, where: str) -> None:
    api = placed
    assert api.put(f"{API}/snapshots/{sha(A)}", content=A).status_code == 201
    # A is stored already; B twice in the same batch is stored once; C is new.
    r = post(api, body((A, {}), (B, {}), (B, {}), (C, {})))
    assert r.status_code == 200, r.text
    answers = r.json()["parts"]
    assert [(a["sha256"], a["created"], a["error"]) for a in answers] == [
        (sha(A), False, None),
        (sha(B), True, None),
        (sha(B), False, None),
        (sha(C), True, None),
    ]
    assert stored(api) == {sha(A), sha(B), sha(C)}
    for data in (A, B, C):
        assert api.get(f"{API}/snapshots/{sha(data)}").content == data
        assert api.get(f"{API}/snapshots/{sha(data)}/info").json()["size"] == len(data)
    assert not list((api.app.state.blobs.root / "tmp").iterdir())  # nothing left staged
    if where == "database":
        assert kept_in_database(api) == {sha(A): A, sha(B): B, sha(C): C}
        assert blob_files(api) == []
        return
    blobs = [p for p in blob_files(api) if p.parent.name != "tmp"]
    assert sorted(p.name for p in blobs) == sorted({sha(A), sha(B), sha(C)})
    assert all(p.stat().st_mode & 0o222 == 0 for p in blobs)  # read-only, as PUT leaves them


def test_a_part_whose_bytes_do_not_match_is_refused_alone(api: TestClient) -> None:
    spoilt = {"sha256": sha(b"something else"), "size": len(A)}
    header = {"parts": [spoilt, {"sha256": sha(B), "size": len(B)}]}
    r = post(api, body((A, {}), (B, {}), header=header))
    assert r.status_code == 200, r.text
    first, second = r.json()["parts"]
    assert first["created"] is None and first["error"]["code"] == "hash_mismatch"
    assert sha(A) in first["error"]["detail"]
    assert second == {"sha256": sha(B), "created": True, "error": None}
    assert stored(api) == {sha(B)}
    assert not list((api.app.state.blobs.root / "tmp").iterdir())


def _agent_api(api: TestClient) -> TestClient:
    token = api.post(f"{API}/tokens", json={"role": "agent"}).json()["token"]
    return TestClient(api.app, headers={"Authorization": f"Bearer {token}"})


def test_agents_send_each_part_under_a_live_run_of_their_own(api: TestClient) -> None:
    mine, other = _agent_api(api), _agent_api(api)
    submit(api, campaign(api), "k1", "k2", "k3")
    mine_id = mine.post(f"{API}/agents", json={"name": "m", "host": "h", "slots": 2}).json()
    other_id = other.post(f"{API}/agents", json={"name": "o", "host": "h", "slots": 1}).json()
    held = claim(mine, mine_id["agent"]["id"], 2)
    (theirs,) = claim(other, other_id["agent"]["id"], 1)
    assert len({held[0]["run_id"], held[1]["run_id"], theirs["run_id"]}) == 3
    lease = f"{held[0]['run_id']}:{held[0]['token']}"
    r = post(
        mine,
        body(
            (A, {"lease": lease}),
            (B, {"lease": f"{held[1]['run_id']}:not-its-token"}),
            (C, {"lease": f"{theirs['run_id']}:{theirs['token']}"}),
            (b"no lease at all", {}),
        ),
    )
    assert r.status_code == 200, r.text
    codes = [(a["created"], (a["error"] or {}).get("code")) for a in r.json()["parts"]]
    assert codes == [(True, None), (None, "stale_lease"), (None, "forbidden"), (None, "forbidden")]
    assert stored(api) == {sha(A)}  # the refused parts are kept nowhere


@pytest.mark.parametrize(
    ("content", "status", "says"),
    [
        (b'{"parts": []}', 400, "newline"),  # no header line
        (body((A, {}))[:-1], 400, "add up to"),  # a byte short
        (body((A, {})) + b"x", 400, "add up to"),  # a byte over
        (b"not json\n", 422, "batch header"),
        (b'{"parts": []}\n', 422, "parts"),
        (body((A, {}), header={"parts": [{"sha256": "abc", "size": len(A)}]}), 422, "sha256"),
        (body((A, {}), header={"parts": [{"sha256": sha(A), "size": -1}]}), 422, "size"),
        (body((A, {}), header={"parts": [{"sha256": sha(A), "size": len(A), "x": 1}]}), 422, "x"),
    ],
)
def test_a_body_that_does_not_frame_is_refused_whole(
    api: TestClient, content: bytes, status: int, says: str
) -> None:
    r = post(api, content)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]
    assert stored(api) == set() and not blob_files(api)


def test_too_many_parts_is_a_422(api: TestClient) -> None:
    parts = [(bytes([i % 256, i // 256]), {}) for i in range(wire.MAX_BATCH_PARTS + 1)]
    r = post(api, body(*parts))
    assert r.status_code == 422 and "parts" in r.json()["detail"]
    assert stored(api) == set()


def test_a_batch_over_its_cap_is_413_and_keeps_nothing(api: TestClient) -> None:
    big = b"x" * (wire.MAX_BATCH_BYTES // 2 + 1)
    r = post(api, body((big, {}), (big + b"y", {})))
    assert r.status_code == 413, r.text
    assert stored(api) == set() and not blob_files(api)


def test_a_part_over_the_snapshot_cap_is_refused_alone(make_api) -> None:
    api = make_api(max_snapshot_bytes=len(B) - 1)
    r = post(api, body((A, {}), (B, {})))
    assert r.status_code == 200, r.text
    first, second = r.json()["parts"]
    assert first["created"] is True
    assert second["error"]["code"] == "too_large" and str(len(B)) in second["error"]["detail"]
    assert stored(api) == {sha(A)}
