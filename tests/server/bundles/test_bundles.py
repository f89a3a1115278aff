"""Export and import of campaigns between two servers (each test runs on both backends):
idempotent merges, unions of overlapping bundles, conflicts reported and left alone."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from farmhand import wire
from farmhand.server.bundles import imports as bundles
from farmhand.server.db import Database
from farmhand.server.tables import (
    Checkpoint,
    Record,
    RecordInput,
    RecordParent,
    RecordResult,
    Run,
    Snapshot,
)
from tests.server.helpers import API, agent, campaign, claim
from tests.server.queue.test_locking import blocked_on_a_lock

TABLES = {
    "records": Record,
    "runs": Run,
    "results": RecordResult,
    "inputs": RecordInput,
    "edges": RecordParent,
    "checkpoints": Checkpoint,
    "snapshots": Snapshot,
}


def upload(api: TestClient, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    r = api.put(f"{API}/snapshots/{sha}", content=data)
    assert r.status_code in (200, 201), r.text
    return sha


def submit(api: TestClient, campaign_id: int, *specs: dict[str, Any], **flags: Any) -> None:
    r = api.post(
        f"{API}/records", json={"campaign_id": campaign_id, "records": list(specs), **flags}
    )
    assert r.status_code == 201, r.text


def counts(api: TestClient) -> dict[str, int]:
    with api.app.state.db.read() as session:
        return {
            name: session.execute(select(func.count()).select_from(table)).scalar()
            for name, table in TABLES.items()
        }


def by_key(api: TestClient, campaign_id: int) -> dict[str, dict[str, Any]]:
    page = api.get(f"{API}/records", params={"campaign_id": campaign_id, "limit": 1000}).json()
    return {r["key"]: api.get(f"{API}/records/{r['id']}").json() for r in page["items"]}


def set_archive(api: TestClient, run_id: int, sha: str) -> None:
    with api.app.state.db.write() as session:
        session.execute(update(Run).where(Run.id == run_id).values(archive=sha))


def export(api: TestClient, campaign_id: int, limit: int = 2) -> dict[str, Any]:
    """Every page of the campaign's export, as one import body (and its snapshots)."""
    records, after = [], None
    while True:
        params = {"limit": limit, **({"after": after} if after is not None else {})}
        r = api.get(f"{API}/bundles/{campaign_id}", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        records += page["records"]
        after = page["next"]
        if after is None:
            return {"campaign": page["campaign"], "records": records}


def import_(api: TestClient, bundle: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = api.post(f"{API}/bundles", json=bundle)
    assert r.status_code == status, r.text
    return r.json()


def copy_snapshots(source: TestClient, target: TestClient, bundle: dict[str, Any]) -> None:
    wanted = set()
    for rec in bundle["records"]:
        wanted.update(rec["inputs"].values())
        for run in rec["runs"]:
            wanted.update(c["sha256"] for c in run["checkpoints"])
            wanted.add(run["archive"]) if run["archive"] else None
    for sha in wanted:
        upload(target, source.get(f"{API}/snapshots/{sha}").content)


@pytest.fixture
def staged(source: TestClient, make_api: Callable[..., TestClient]) -> tuple[TestClient, Any]:
    """A second, empty server that already holds the source's snapshots, and the source's
    whole campaign as one import body."""
    target = make_api()
    bundle = export(source, source.campaign_id)
    copy_snapshots(source, target, bundle)
    return target, bundle


@pytest.fixture
def source(make_api: Callable[..., TestClient]) -> TestClient:
    """A server with campaign relax:1 holding records in many states:
    a done (result, archive, checkpoint), b failed, c ready (child of a), d running,
    e waiting (child of d), f ready with an input."""
    api = make_api()
    c = campaign(api, "relax", walltime=600)
    script, archive, saved = upload(api, b"print(1)\n"), upload(api, b"tar"), upload(api, b"ck")
    submit(
        api,
        c,
        {"key": "a", "command": "run a", "tags": ["t"], "dataset": "ds"},
        {"key": "b", "command": "run b", "run_args": {"max_attempts": 1}},
        {"key": "c", "command": "run c", "parents": ["a"]},
        {"key": "d", "command": "run d", "params": {"T": 600, "phase": "fcc"}},
        {"key": "e", "command": "run e", "parents": ["d"]},
        {"key": "f", "command": "python relax.py", "inputs": {"relax.py": script}},
    )
    worker = agent(api)
    leases = {lease["key"]: lease for lease in claim(api, worker, 3)}  # a, b, d
    assert set(leases) == {"a", "b", "d"}
    for key, lease in leases.items():
        run, token = f"{API}/runs/{lease['run_id']}", {"token": lease["token"]}
        assert api.post(f"{run}/start", json=token).status_code == 200
        if key == "a":
            r = api.post(f"{run}/checkpoints", json={**token, "sha256": saved})
            assert r.status_code == 201, r.text
            assert api.post(f"{run}/complete", json={**token, "result": {"e": -3.5}}).is_success
            set_archive(api, lease["run_id"], archive)
        if key == "b":
            assert api.post(f"{run}/fail", json={**token, "error": "boom"}).is_success
    api.campaign_id = c  # type: ignore[attr-defined]
    return api


def test_export_carries_records_runs_results_inputs_and_parents(source: TestClient) -> None:
    bundle = export(source, source.campaign_id)
    records = {r["key"]: r for r in bundle["records"]}
    assert bundle["campaign"]["name"] == "relax" and bundle["campaign"]["version"] == 1
    assert bundle["campaign"]["defaults"] == {"walltime": 600}
    assert [r["key"] for r in bundle["records"]] == ["a", "b", "c", "d", "e", "f"]
    a = records["a"]
    assert (a["state"], a["result"], a["tags"], a["dataset"]) == ("done", {"e": -3.5}, ["t"], "ds")
    (run,) = a["runs"]
    assert a["result_run"] == run["id"] and run["state"] == "done" and run["archive"]
    assert len(run["checkpoints"]) == 1
    assert records["c"]["parents"] == ["a"] and records["e"]["parents"] == ["d"]
    assert records["b"]["state"] == "failed" and records["b"]["runs"][0]["error"] == "boom"
    assert records["d"]["state"] == "running" and records["d"]["runs"][0]["state"] == "running"
    assert list(records["f"]["inputs"]) == ["relax.py"]
    assert "token" not in run and "agent_id" not in run


def test_export_gives_each_run_its_own_checkpoints(make_api: Callable[..., TestClient]) -> None:
    """Two records, two runs each, a checkpoint per run.

    Caught mutant: the export grouping checkpoints by `record_id` instead of `run_id`
    (server/bundles/export.py) hands a run the checkpoints of a record whose id it shares, or
    none."""
    api = make_api()
    c = campaign(api)
    submit(api, c, {"key": "a", "command": "run a"}, {"key": "b", "command": "run b"})
    worker = agent(api)
    saved: dict[str, list[list[str]]] = {"a": [], "b": []}
    for attempt in (1, 2):
        for lease in claim(api, worker, 2):
            run, token = f"{API}/runs/{lease['run_id']}", {"token": lease["token"]}
            sha = upload(api, f"{lease['key']} attempt {attempt}".encode())
            assert api.post(f"{run}/checkpoints", json={**token, "sha256": sha}).status_code == 201
            assert api.post(f"{run}/fail", json={**token, "error": "killed"}).is_success
            saved[lease["key"]].append([sha])
    records = {r["key"]: r for r in export(api, c)["records"]}
    exported = {
        key: [[ck["sha256"] for ck in run["checkpoints"]] for run in records[key]["runs"]]
        for key in ("a", "b")
    }
    assert exported == saved


def test_import_twice_gives_identical_counts(
    source: TestClient, staged: tuple[TestClient, dict[str, Any]]
) -> None:
    target, bundle = staged
    first = import_(target, bundle)
    assert first["campaign_created"] and (first["created"], first["merged"]) == (6, 0)
    after_first = counts(target)
    second = import_(target, bundle)
    assert (second["created"], second["merged"], second["unchanged"]) == (0, 0, 6)
    assert second["conflicts"] == [] and not second["campaign_created"]
    assert counts(target) == after_first
    assert after_first["records"] == 6 and after_first["runs"] == counts(source)["runs"] == 3
    assert after_first["snapshots"] == 3 and after_first["checkpoints"] == 1


def test_imported_records_arrive_as_described(
    source: TestClient, make_api: Callable[..., TestClient]
) -> None:
    target = make_api()
    target_other = campaign(target, "other")  # ids differ from the source's
    submit(target, target_other, {"key": "z", "command": "z"})
    bundle = export(source, source.campaign_id)
    copy_snapshots(source, target, bundle)
    cid = import_(target, bundle)["campaign_id"]
    ours, theirs = by_key(target, cid), by_key(source, source.campaign_id)
    assert {k: r["state"] for k, r in ours.items()} == {
        "a": "done",
        "b": "failed",
        "c": "ready",
        "d": "ready",  # it was running there: no lease here
        "e": "waiting",
        "f": "ready",
    }
    assert ours["a"]["result"] == {"e": -3.5} and ours["a"]["derived_run_args"]["walltime"] == 600
    assert ours["d"]["attempts"] == 0 and ours["d"]["runs"][0]["state"] == "released"
    assert ours["e"]["parents"] == ["d"] and ours["c"]["parents"] == ["a"]
    assert ours["d"]["params"] == {"T": 600, "phase": "fcc"} and ours["e"]["params"] == {}
    assert target.get(f"{API}/campaigns/{cid}").json()["params"] == ["T", "phase"]
    assert ours["b"]["error"] == theirs["b"]["error"]
    mine, src = ours["a"]["runs"][0], theirs["a"]["runs"][0]
    assert mine["archive"] == src["archive"] and mine["agent_id"] is None
    assert mine["exit_code"] == src["exit_code"] and mine["ended_at"] == src["ended_at"]
    with target.app.state.db.read() as s, source.app.state.db.read() as t:
        new_tokens = set(s.execute(select(Run.token)).scalars())
        old_tokens = set(t.execute(select(Run.token)).scalars())
        assert not new_tokens & old_tokens
    # The imported ready records are claimable like any other.
    keys = {lease["key"] for lease in claim(target, agent(target), 10)}
    assert keys == {"c", "d", "f", "z"}


def test_overlapping_bundles_give_the_union(
    source: TestClient,
    staged: tuple[TestClient, dict[str, Any]],
    make_api: Callable[..., TestClient],
) -> None:
    target, bundle = staged
    records = {r["key"]: r for r in bundle["records"]}
    one = {"campaign": bundle["campaign"], "records": [records[k] for k in "abcd"]}
    two = {"campaign": bundle["campaign"], "records": [records[k] for k in "cdef"]}
    assert import_(target, one)["created"] == 4
    answer = import_(target, two)
    assert (answer["created"], answer["unchanged"]) == (2, 2)
    whole = make_api()
    copy_snapshots(source, whole, bundle)
    import_(whole, bundle)
    assert counts(target) == counts(whole)


def test_a_done_record_in_the_bundle_completes_ours_and_unblocks_its_children(
    staged: tuple[TestClient, dict[str, Any]],
) -> None:
    target, bundle = staged
    # The target already has a and c (same spec) from its own submission: a ready, c waiting.
    r = target.post(f"{API}/campaigns", json={"name": "relax", "defaults": {"walltime": 600}})
    cid = r.json()["id"]
    submit(
        target,
        cid,
        {"key": "a", "command": "run a", "tags": ["t"], "dataset": "ds"},
        {"key": "c", "command": "run c", "parents": ["a"]},
    )
    answer = import_(target, bundle)
    assert answer["campaign_id"] == cid and not answer["campaign_created"]
    assert (answer["created"], answer["merged"], answer["unchanged"]) == (4, 1, 1)
    ours = by_key(target, cid)
    assert ours["a"]["state"] == "done" and ours["a"]["result"] == {"e": -3.5}
    assert ours["a"]["runs"][0]["archive"] is not None
    assert ours["c"]["state"] == "ready"  # unblocked by the merge
    before = counts(target)
    assert import_(target, bundle)["merged"] == 0 and counts(target) == before


def test_a_leased_record_here_is_not_merged(staged: tuple[TestClient, dict[str, Any]]) -> None:
    target, bundle = staged
    cid = campaign(target, "relax", walltime=600)
    submit(target, cid, {"key": "a", "command": "run a", "tags": ["t"], "dataset": "ds"})
    (lease,) = claim(target, agent(target))
    answer = import_(target, bundle)
    assert answer["merged"] == 0 and answer["unchanged"] == 1
    a = by_key(target, cid)["a"]
    assert a["state"] == "claimed" and [r["id"] for r in a["runs"]] == [lease["run_id"]]


def test_a_different_spec_is_reported_and_left_untouched(
    staged: tuple[TestClient, dict[str, Any]],
) -> None:
    target, bundle = staged
    cid = campaign(target, "relax", walltime=600)
    submit(
        target,
        cid,
        {"key": "a", "command": "run a --other", "tags": ["t"], "dataset": "ds"},
        {"key": "b", "command": "run b", "run_args": {"max_attempts": 2}, "tags": ["x"]},
        {"key": "d", "command": "run d", "params": {"T": 601, "phase": "fcc"}},
    )
    before = by_key(target, cid)
    answer = import_(target, bundle)
    conflicts = {c["key"]: c["differs"] for c in answer["conflicts"]}
    assert conflicts == {"a": ["command"], "b": ["run_args", "tags"], "d": ["params"]}
    after = by_key(target, cid)
    for key in "abd":  # c, new here, names our a as its parent: only `children` changed
        assert {**after[key], "children": []} == {**before[key], "children": []}
    assert answer["created"] == 3  # c (child of our a), e (child of our d), f
    assert after["c"]["state"] == "waiting"  # our a is not done


def test_campaign_settings_that_differ_are_noted(staged: tuple[TestClient, dict[str, Any]]) -> None:
    target, bundle = staged
    campaign(target, "relax", walltime=60)
    answer = import_(target, bundle)
    assert answer["notes"] == ["relax:1 here has other defaults than the bundle's; kept this one"]


def test_missing_snapshots_refuse_the_import_and_change_nothing(
    source: TestClient, make_api: Callable[..., TestClient]
) -> None:
    target = make_api()
    bundle = export(source, source.campaign_id)
    before = counts(target)
    r = target.post(f"{API}/bundles", json=bundle)
    assert r.status_code == 422
    assert "3 snapshot(s) the records reference are not on this server" in r.json()["detail"]
    assert counts(target) == before
    assert target.get(f"{API}/campaigns").json() == []


def test_unknown_parents_refuse_the_chunk(staged: tuple[TestClient, dict[str, Any]]) -> None:
    target, bundle = staged
    records = {r["key"]: r for r in bundle["records"]}
    r = target.post(f"{API}/bundles", json={**bundle, "records": [records["c"]]})
    assert r.status_code == 422
    assert "record 'c' has parents not on this server: 'a'" in r.json()["detail"]
    assert counts(target)["records"] == 0


def test_parents_in_other_campaigns_travel_by_name_version_and_key(
    make_api: Callable[..., TestClient],
) -> None:
    source, target = make_api(), make_api()
    up = campaign(source, "up")
    submit(source, up, {"key": "p", "command": "p"})
    parent_id = by_key(source, up)["p"]["id"]
    down = campaign(source, "down")
    submit(source, down, {"key": "k", "command": "k", "parents": [parent_id]})
    (record,) = export(source, down)["records"]
    assert record["parents"] == [] and record["outside_parents"] == [
        {"campaign": "up:1", "key": "p"}
    ]
    r = target.post(f"{API}/bundles", json=export(source, down))
    assert r.status_code == 422 and "'p' of campaign up:1" in r.json()["detail"]
    import_(target, export(source, up))
    cid = import_(target, export(source, down))["campaign_id"]
    (k,) = by_key(target, cid).values()
    assert k["parents"] == ["p"] and k["state"] == "waiting"


def test_import_needs_a_submitter_and_export_a_known_campaign(
    source: TestClient, make_api: Callable[..., TestClient]
) -> None:
    token = source.post(f"{API}/tokens", json={"role": "agent"}).json()["token"]
    bundle = export(source, source.campaign_id)
    r = source.post(f"{API}/bundles", json=bundle, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert source.get(f"{API}/bundles/999").status_code == 404
    bad = {**bundle, "records": [{**bundle["records"][0], "state": "sleeping"}]}
    assert source.post(f"{API}/bundles", json=bad).status_code == 422


def test_a_cycle_in_a_crafted_bundle_is_refused(
    source: TestClient, make_api: Callable[..., TestClient]
) -> None:
    target = make_api()
    bundle = export(source, source.campaign_id)
    records = {r["key"]: r for r in bundle["records"]}
    looped = [{**records["c"], "parents": ["d"]}, {**records["d"], "parents": ["c"]}]
    looped = [{**r, "runs": []} for r in looped]
    r = target.post(f"{API}/bundles", json={**bundle, "records": looped})
    assert r.status_code == 422 and "cycle" in r.json()["detail"]
    assert counts(target)["records"] == 0


def test_two_imports_into_one_campaign_take_turns(db: Database) -> None:
    """Two real transactions importing the same new keys: the second waits for the first
    (PostgreSQL: an advisory lock per campaign), then finds them there: unchanged."""
    now = datetime.now(timezone.utc)
    body = wire.BundleImport(
        campaign=wire.BundleCampaign(name="c", version=2, created_at=now),
        records=[
            wire.BundleRecord(
                key=f"k{i}",
                command="true",
                state="ready",
                attempts=0,
                max_attempts=1,
                created_at=now,
            )
            for i in range(3)
        ],
    )
    with db.write() as session:  # the campaign exists: only the records are new
        empty = body.model_copy(update={"records": []})
        assert bundles.import_chunk(session, body=empty, now=now).campaign_created
    inside, release = threading.Event(), threading.Event()
    answers: dict[str, wire.BundleImported] = {}

    def first() -> None:
        with db.write() as session:
            answers["first"] = bundles.import_chunk(session, body=body, now=now)
            inside.set()
            assert release.wait(30)

    def second() -> None:
        with db.write() as session:
            answers["second"] = bundles.import_chunk(session, body=body, now=now)

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(30)
    two = threading.Thread(target=second)
    two.start()
    deadline = time.monotonic() + 30
    while not blocked_on_a_lock(db, two):
        assert time.monotonic() < deadline, "the second import never waited for the first"
        time.sleep(0.01)
    assert "second" not in answers
    release.set()
    one.join(30)
    two.join(30)
    assert answers["first"].created == 3 and answers["second"].unchanged == 3
