"""Snapshots in records, leases and reports: inputs, output archives, checkpoints."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from tests.server.helpers import API, agent, campaign, claim, record


def upload(api: TestClient, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    assert api.put(f"{API}/snapshots/{sha}", content=data).status_code in (200, 201)
    return sha


def specs(*keys: str, **extra: object) -> list[dict]:
    return [{"key": k, "command": f"run {k}", **extra} for k in keys]


def post(api: TestClient, campaign_id: int, records: list[dict], **flags: bool):
    return api.post(
        f"{API}/records", json={"campaign_id": campaign_id, "records": records, **flags}
    )


def test_records_name_inputs_the_server_holds(api: TestClient) -> None:
    cid = campaign(api)
    sha = upload(api, b"print('relax')\n")
    missing = "ab" * 32
    refused = post(api, cid, specs("a", inputs={"relax.py": sha, "pot/Al.eam": missing}))
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "record 'a' input 'pot/Al.eam'" in detail and missing in detail and "upload" in detail
    assert api.get(f"{API}/records", params={"campaign_id": cid}).json()["items"] == []

    made = post(api, cid, specs("a", "b", "c", inputs={"relax.py": sha}))
    assert made.status_code == 201 and made.json()["created"] == 3
    listed = api.get(f"{API}/records", params={"campaign_id": cid}).json()["items"]
    assert [r["inputs"] for r in listed] == [{"relax.py": sha}] * 3
    assert record(api, listed[0]["id"])["inputs"] == {"relax.py": sha}
    assert api.get(f"{API}/snapshots/{sha}/info").json()["references"] == 3
    (lease,) = claim(api, agent(api))
    assert lease["inputs"] == {"relax.py": sha} and lease["checkpoint"] is None


def test_a_resubmission_that_is_skipped_keeps_the_inputs(api: TestClient) -> None:
    cid = campaign(api)
    old, new = upload(api, b"old"), upload(api, b"new")
    assert post(api, cid, specs("a", inputs={"in.txt": old})).status_code == 201
    again = post(api, cid, specs("a", "b", inputs={"in.txt": new}))
    assert again.json()["created"] == 1 and again.json()["skipped"] == 1
    by_key = {r["key"]: r["inputs"] for r in api.get(f"{API}/records").json()["items"]}
    assert by_key == {"a": {"in.txt": old}, "b": {"in.txt": new}}
    forced = post(api, cid, specs("a", inputs={"other.txt": new}), force=True)
    assert forced.json()["replaced"] == 1
    by_key = {r["key"]: r["inputs"] for r in api.get(f"{API}/records").json()["items"]}
    assert by_key["a"] == {"other.txt": new}


def test_bad_input_paths_are_422(api: TestClient) -> None:
    cid = campaign(api)
    sha = upload(api, b"x")
    for path in ("/etc/passwd", "../up", "a/../b", "a//b", "", "a\\b"):
        got = post(api, cid, specs("a", inputs={path: sha}))
        assert got.status_code == 422, path
    nested = post(api, cid, specs("a", inputs={"a": sha, "a/b": sha}))
    assert nested.status_code == 422 and "inside input 'a'" in nested.json()["detail"]
    assert post(api, cid, specs("a", inputs={"a": "XYZ"})).status_code == 422


def test_reports_attach_archives_that_are_uploaded(api: TestClient) -> None:
    cid = campaign(api)
    post(api, cid, specs("parent") + specs("child", parents=["parent"]))
    aid = agent(api)
    (lease,) = claim(api, aid)
    archive = hashlib.sha256(b"tar.gz bytes").hexdigest()
    body = {"token": lease["token"], "result": {"e": 1}, "archive": archive}
    early = api.post(f"{API}/runs/{lease['run_id']}/complete", json=body)
    assert early.status_code == 422 and "upload it first" in early.json()["detail"]
    assert record(api, lease["record_id"])["state"] == "claimed"  # nothing changed
    upload(api, b"tar.gz bytes")
    done = api.post(f"{API}/runs/{lease['run_id']}/complete", json=body)
    assert done.status_code == 200 and done.json()["record_state"] == "done"
    again = api.post(f"{API}/runs/{lease['run_id']}/complete", json=body)
    assert again.json() == done.json()  # idempotent with the archive in the report
    assert record(api, lease["record_id"])["runs"][0]["archive"] == archive
    (child,) = claim(api, aid)
    assert [(p["key"], p["archive"], p["result"]) for p in child["parents"]] == [
        ("parent", archive, {"e": 1})
    ]


def test_a_batch_report_refuses_only_the_item_whose_archive_is_missing(api: TestClient) -> None:
    cid = campaign(api)
    post(api, cid, specs("a", "b"))
    leases = claim(api, agent(api), 2)
    have = upload(api, b"archive a")
    reports = [
        {"run_id": leases[0]["run_id"], "token": leases[0]["token"], "archive": have},
        {"run_id": leases[1]["run_id"], "token": leases[1]["token"], "archive": "cd" * 32},
    ]
    answers = api.post(f"{API}/runs/reports", json={"reports": reports}).json()["answers"]
    assert answers[0]["ack"]["record_state"] == "done"
    assert answers[1]["ack"] is None and "cd" * 32 in answers[1]["error"]["detail"]
    assert record(api, leases[1]["record_id"])["state"] == "claimed"


def test_the_next_attempt_gets_the_newest_checkpoint(api: TestClient) -> None:
    cid = campaign(api, retry_delay=0)  # the next attempt at once
    post(api, cid, specs("long"))
    aid = agent(api)
    (first,) = claim(api, aid)
    assert first["checkpoint"] is None
    one, two = upload(api, b"checkpoint 1"), upload(api, b"checkpoint 2")
    for sha in (one, two):
        body = {"token": first["token"], "sha256": sha}
        assert api.post(f"{API}/runs/{first['run_id']}/checkpoints", json=body).status_code == 201
    fail = {"token": first["token"], "error": "killed by signal SIGKILL"}
    assert api.post(f"{API}/runs/{first['run_id']}/fail", json=fail).status_code == 200
    (second,) = claim(api, aid)
    assert second["record_id"] == first["record_id"] and second["checkpoint"] == two
    runs = record(api, first["record_id"])["runs"]
    assert [r["checkpoint"] for r in runs] == [two, None]
    late = api.post(
        f"{API}/runs/{first['run_id']}/checkpoints", json={"token": first["token"], "sha256": one}
    )
    assert late.status_code == 409  # the first run has ended: its token fences nothing now


def test_each_retry_gets_its_own_records_newest_checkpoint(api: TestClient) -> None:
    """Issue 13: the claim found checkpoints by comparing `checkpoint.record_id` with
    `checkpoint.id` on SQLite, so retries resumed only when those ids happened to line up."""
    decoy = campaign(api, "decoy")
    post(api, decoy, specs("d0", "d1", "d2"))  # records first: their ids run ahead
    cid = campaign(api, "main", max_attempts=2, retry_delay=0)
    post(api, cid, specs(*(f"k{i}" for i in range(6))))
    aid = agent(api)
    first = {lease["key"]: lease for lease in claim(api, aid, 9)}
    saved: dict[str, str] = {}
    for key in ("k4", "k2", "k2"):  # k2 saves twice: its retry gets the newer one
        lease = first[key]
        saved[key] = upload(api, f"{key} after {len(saved)}".encode())
        body = {"token": lease["token"], "sha256": saved[key]}
        assert api.post(f"{API}/runs/{lease['run_id']}/checkpoints", json=body).status_code == 201
    for key in (f"k{i}" for i in range(6)):
        fail = {"token": first[key]["token"], "error": "node lost"}
        assert api.post(f"{API}/runs/{first[key]['run_id']}/fail", json=fail).status_code == 200
    retries = claim(api, aid, 6)
    assert {lease["key"]: lease["attempt"] for lease in retries} == {f"k{i}": 2 for i in range(6)}
    assert {lease["key"]: lease["checkpoint"] for lease in retries if lease["checkpoint"]} == saved


def save_checkpoint(api: TestClient, lease: dict, data: bytes) -> str:
    sha = upload(api, data)
    body = {"token": lease["token"], "sha256": sha}
    assert api.post(f"{API}/runs/{lease['run_id']}/checkpoints", json=body).status_code == 201
    return sha


def test_a_claim_of_two_records_gives_each_its_own_newest_checkpoint(api: TestClient) -> None:
    """Caught mutant: `newest_checkpoints` without `.group_by(CHECKPOINT.c.record_id)` takes
    the newest checkpoint of all the claimed records, so only one of them gets any."""
    cid = campaign(api, retry_delay=0)  # the next attempt at once
    post(api, cid, specs("a", "b"))
    aid = agent(api)
    first = {lease["key"]: lease for lease in claim(api, aid, 2)}
    save_checkpoint(api, first["a"], b"a, older")
    b_newest = save_checkpoint(api, first["b"], b"b")
    a_newest = save_checkpoint(api, first["a"], b"a, newest of all")  # after b's
    for lease in first.values():
        fail = {"token": lease["token"], "error": "killed by signal SIGKILL"}
        assert api.post(f"{API}/runs/{lease['run_id']}/fail", json=fail).status_code == 200
    second = {lease["key"]: lease for lease in claim(api, aid, 2)}
    assert {key: lease["checkpoint"] for key, lease in second.items()} == {
        "a": a_newest,
        "b": b_newest,
    }
