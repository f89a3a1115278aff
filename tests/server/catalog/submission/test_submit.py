"""Submission and retry semantics: parents, skip / force / force_ignores_success tables."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farmhand.server.tables import REC
from farmhand.wire import parse_duration
from tests.server.helpers import API, agent, campaign, claim, record

STATES = ["waiting", "ready", "claimed", "running", "done", "failed", "cancelled", "orphaned"]
FLAGS = {
    "default": {},
    "force": {"force": True},
    "force+ignores_success": {"force": True, "force_ignores_success": True},
}


def post(api: TestClient, campaign_id: int, *specs: dict[str, Any], **flags: Any) -> Any:
    return api.post(
        f"{API}/records", json={"campaign_id": campaign_id, "records": list(specs), **flags}
    )


def by_key(api: TestClient, campaign_id: int) -> dict[str, dict[str, Any]]:
    page = api.get(f"{API}/records", params={"campaign_id": campaign_id, "limit": 1000}).json()
    return {r["key"]: r for r in page["items"]}


def make_record_in(api: TestClient, state: str) -> tuple[int, int]:
    """A campaign with a record 'k' in `state` (and, for waiting, its parent 'p')."""
    c = campaign(api, max_attempts=1)
    if state == "waiting":
        assert post(api, c, {"key": "p", "command": "true"}).status_code == 201
        r = post(api, c, {"key": "k", "command": "old", "parents": ["p"]})
    else:
        r = post(api, c, {"key": "k", "command": "old"})
    assert r.status_code == 201, r.text
    rid = by_key(api, c)["k"]["id"]
    if state in ("claimed", "running", "done", "failed"):
        (lease,) = claim(api, agent(api))
        run = f"{API}/runs/{lease['run_id']}"
        token = {"token": lease["token"]}
        if state != "claimed":
            api.post(f"{run}/start", json=token)
        if state == "done":
            api.post(f"{run}/complete", json={**token, "result": {"v": 1}})
        if state == "failed":
            api.post(f"{run}/fail", json={**token, "error": "boom"})
    if state == "orphaned":
        (lease,) = claim(api, agent(api))
        api.post(
            f"{API}/runs/{lease['run_id']}/orphan", json={"token": lease["token"], "reason": "r"}
        )
    if state == "cancelled":
        api.post(f"{API}/records/cancel", json={"ids": [rid]})
    assert record(api, rid)["state"] == state
    return c, rid


# What a submission of an existing key does, for each state and flag set.
SUBMIT_TABLE = {
    (state, flags): (
        "skip" if flags == "default" or (state == "done" and flags == "force") else "replace"
    )
    for state in STATES
    for flags in FLAGS
}


@pytest.mark.parametrize(("state", "flags"), sorted(SUBMIT_TABLE))
def test_submitting_an_existing_key(api: TestClient, state: str, flags: str) -> None:
    c, rid = make_record_in(api, state)
    r = post(api, c, {"key": "k", "command": "new", "run_args": {"x": 1}}, **FLAGS[flags])
    assert r.status_code == 201, r.text
    after = record(api, rid)
    if SUBMIT_TABLE[(state, flags)] == "skip":
        assert (r.json()["skipped"], r.json()["replaced"]) == (1, 0)
        assert (after["state"], after["command"]) == (state, "old")
        return
    assert (r.json()["skipped"], r.json()["replaced"], r.json()["replaced_keys"]) == (0, 1, ["k"])
    assert (after["state"], after["command"], after["run_args"]) == ("ready", "new", {"x": 1})
    assert (after["attempts"], after["error"], after["result"], after["parents"]) == (
        0,
        None,
        None,
        [],
    )
    live = [run for run in after["runs"] if run["state"] in ("leased", "running")]
    assert live == [], "a replaced record's live run is cancelled"


@pytest.mark.parametrize(("state", "flags"), sorted(SUBMIT_TABLE))
def test_an_unchanged_record_is_never_replaced(api: TestClient, state: str, flags: str) -> None:
    """Rerunning what did not change is retry's job: even `force` + `force_ignores_success`
    skip a record whose spec is the one submitted (a live run of it goes on)."""
    c, rid = make_record_in(api, state)
    before = record(api, rid)
    same = {"key": "k", "command": "old", **({"parents": ["p"]} if state == "waiting" else {})}
    r = post(api, c, same, **FLAGS[flags])
    assert r.status_code == 201, r.text
    answer = r.json()
    assert (answer["skipped"], answer["replaced"], answer["differing"]) == (1, 0, 0)
    after = record(api, rid)
    assert (after["state"], after["attempts"], after["runs"]) == (
        before["state"],
        before["attempts"],
        before["runs"],
    )


def test_force_ignores_success_needs_force(api: TestClient) -> None:
    c, rid = make_record_in(api, "done")
    r = post(api, c, {"key": "k", "command": "new"}, force_ignores_success=True)
    assert r.status_code == 422 and "needs force" in r.json()["detail"]
    assert record(api, rid)["command"] == "old"


RETRY_TABLE = {
    (state, flags): (
        "retry"
        if state in ("failed", "cancelled", "orphaned")
        or (flags != "default" and state != "done")
        or flags == "force+ignores_success"
        else "skip"
    )
    for state in STATES
    for flags in FLAGS
}


@pytest.mark.parametrize(("state", "flags"), sorted(RETRY_TABLE))
def test_retrying_a_record(api: TestClient, state: str, flags: str) -> None:
    _, rid = make_record_in(api, state)
    before = record(api, rid)
    r = api.post(f"{API}/records/retry", json={"ids": [rid], **FLAGS[flags]})
    assert r.status_code == 200, r.text
    after = record(api, rid)
    if RETRY_TABLE[(state, flags)] == "skip":
        assert r.json()["changed"] == [] and r.json()["skipped"][0]["key"] == "k"
        assert after["state"] == state and after["runs"] == before["runs"]
        return
    assert r.json()["changed"] == [rid]
    expected = "waiting" if state == "waiting" else "ready"  # its parent is still not done
    assert (after["state"], after["attempts"], after["result"]) == (expected, 0, None)
    assert all(run["state"] not in ("leased", "running") for run in after["runs"])


def test_unknown_parents_are_named_and_nothing_is_created(api: TestClient) -> None:
    c = campaign(api)
    r = post(
        api,
        c,
        {"key": "a", "command": "x"},
        {"key": "b", "command": "x", "parents": ["a", "ghost", 999999]},
    )
    assert r.status_code == 422
    assert "record 'b' has unknown parents 'ghost', 999999" in r.json()["detail"]
    assert by_key(api, c) == {}


def test_a_cycle_is_refused_naming_its_records(api: TestClient) -> None:
    c = campaign(api)
    r = post(
        api,
        c,
        {"key": "a", "command": "x", "parents": ["c"]},
        {"key": "b", "command": "x", "parents": ["a"]},
        {"key": "c", "command": "x", "parents": ["b"]},
        {"key": "free", "command": "x"},
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "the parents form a cycle through records 'a', 'b', 'c'"
    assert by_key(api, c) == {}
    selfish = post(api, c, {"key": "s", "command": "x", "parents": ["s"]})
    assert selfish.status_code == 422 and "'s'" in selfish.json()["detail"]


def test_a_forced_replacement_cannot_close_a_cycle_through_stored_records(
    api: TestClient,
) -> None:
    c = campaign(api)
    post(api, c, {"key": "a", "command": "x"})
    post(api, c, {"key": "b", "command": "x", "parents": ["a"]})
    post(api, c, {"key": "c", "command": "x", "parents": ["b"]})
    r = post(api, c, {"key": "a", "command": "y", "parents": ["c"]}, force=True)
    assert r.status_code == 422 and "cycle" in r.json()["detail"]
    assert by_key(api, c)["a"]["command"] == "x" and by_key(api, c)["a"]["parents"] == []


def test_parents_decide_the_starting_state(api: TestClient) -> None:
    c = campaign(api, max_attempts=1)
    post(api, c, {"key": "done-p", "command": "x"}, {"key": "bad-p", "command": "x"})
    a = agent(api)
    for lease in claim(api, a, 2):
        run = f"{API}/runs/{lease['run_id']}"
        if lease["key"] == "done-p":
            api.post(f"{run}/complete", json={"token": lease["token"]})
        else:
            api.post(f"{run}/fail", json={"token": lease["token"], "error": "boom"})
    r = post(
        api,
        c,
        {"key": "after-done", "command": "x", "parents": ["done-p"]},
        {"key": "after-bad", "command": "x", "parents": ["done-p", "bad-p"]},
        {"key": "grandchild", "command": "x", "parents": ["after-bad"]},
        {"key": "new-p", "command": "x"},
        {"key": "after-new", "command": "x", "parents": ["new-p", "done-p"]},
    )
    assert r.status_code == 201, r.text
    got = {k: (v["state"], v["error"]) for k, v in by_key(api, c).items()}
    assert got["after-done"] == ("ready", None)
    assert got["after-bad"] == ("failed", "upstream failed: bad-p")
    assert got["grandchild"] == ("failed", "upstream failed: bad-p")
    assert got["after-new"] == ("waiting", None)
    assert by_key(api, c)["after-new"]["parents"] == ["done-p", "new-p"]


def test_cancelling_a_parent_fails_its_waiting_descendants(api: TestClient) -> None:
    c = campaign(api)
    post(
        api,
        c,
        {"key": "p", "command": "x"},
        {"key": "child", "command": "x", "parents": ["p"]},
        {"key": "grandchild", "command": "x", "parents": ["child"]},
        {"key": "other", "command": "x"},
    )
    keys = by_key(api, c)
    api.post(f"{API}/records/cancel", json={"ids": [keys["p"]["id"]]})
    got = {k: (v["state"], v["error"]) for k, v in by_key(api, c).items()}
    assert got == {
        "p": ("cancelled", "cancelled by a user"),
        "child": ("failed", "upstream failed: p"),
        "grandchild": ("failed", "upstream failed: p"),
        "other": ("ready", None),
    }
    r = api.post(f"{API}/records/retry", json={"ids": [keys["p"]["id"]]})
    assert r.json()["reopened"] == 2
    got = {k: v["state"] for k, v in by_key(api, c).items()}
    assert got == {"p": "ready", "child": "waiting", "grandchild": "waiting", "other": "ready"}


def test_campaign_versions_and_based_on(api: TestClient) -> None:
    first = api.post(f"{API}/campaigns", json={"name": "relax"}).json()
    second = api.post(f"{API}/campaigns", json={"name": "relax", "based_on": "relax"}).json()
    third = api.post(f"{API}/campaigns", json={"name": "relax", "based_on": "relax:1"}).json()
    assert [first["version"], second["version"], third["version"]] == [1, 2, 3]
    assert [second["based_on"], third["based_on"]] == ["relax:1", "relax:1"]
    again = api.get(f"{API}/campaigns/{third['id']}").json()
    assert again["based_on"] == "relax:1"
    bad = api.post(f"{API}/campaigns", json={"name": "x", "based_on": "relax:9"})
    assert bad.status_code == 422 and bad.json()["detail"] == "campaign 'relax:9' does not exist"


def test_bad_resource_run_args_are_named(api: TestClient) -> None:
    c = campaign(api)
    r = post(api, c, {"key": "k", "command": "x", "run_args": {"memory": "lots"}})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("record 'k': run_args.memory must be MiB")
    r = post(api, c, {"key": "k", "command": "x", "run_args": {"walltime": "1:00:00"}})
    assert r.status_code == 201


@pytest.mark.parametrize(
    ("walltime", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("05:30", 330.0),
        ("1:00:00", 3600.0),
        ("1-02:00:00", 93600.0),
        ("2-12", 216000.0),
    ],
)
def test_walltime_is_read_as_the_agent_reads_it(
    api: TestClient, walltime: object, seconds: float
) -> None:
    c = campaign(api)
    assert (
        post(api, c, {"key": "k", "command": "x", "run_args": {"walltime": walltime}}).status_code
        == 201
    )
    assert parse_duration(str(walltime)) == seconds
    agent_id = agent(api)

    def claim_within(left: float) -> list[str]:
        body = {"agent_id": agent_id, "max_records": 10, "walltime_left": left}
        return [lease["key"] for lease in api.post(f"{API}/leases", json=body).json()["leases"]]

    assert claim_within(seconds - 1) == []  # stored as `seconds`: one less is too short
    assert claim_within(seconds) == ["k"]


@pytest.mark.parametrize("walltime", ["soon", "0", 0, -5, "1:2:3:4", True, [60], "nan"])
def test_a_bad_walltime_is_named_and_changes_nothing(api: TestClient, walltime: object) -> None:
    c = campaign(api)
    r = post(api, c, {"key": "k", "command": "x", "run_args": {"walltime": walltime}})
    assert r.status_code == 422
    assert r.json()["detail"].startswith(
        "invalid request: records.0.run_args: Value error, run_args.walltime must be a "
        "positive duration (seconds, 30m, 2h, 1d, MM:SS, HH:MM:SS or D-HH:MM:SS), got "
    )
    assert by_key(api, c) == {}


def test_one_batch_may_mix_whole_and_fractional_amounts(api: TestClient) -> None:
    """PostgreSQL inserts a batch as one array per column and refuses int and float mixed
    in one array: every amount of a FLOAT column is stored as a float."""
    c = campaign(api)
    specs = [
        {"key": "a", "command": "x", "run_args": {"walltime": 3600, "cores": 4}},
        {"key": "b", "command": "x", "run_args": {"walltime": "02:00", "cores": 2.5}},
        {"key": "c", "command": "x", "run_args": {"walltime": 90.5}},
        {"key": "d", "command": "x"},
    ]
    r = post(api, c, *specs)
    assert r.status_code == 201, r.text
    assert r.json()["created"] == 4
    stored = {k: v["derived_run_args"] for k, v in by_key(api, c).items()}
    assert stored["b"] == {"walltime": "02:00", "cores": 2.5}
    agent_id = agent(api)
    body = {"agent_id": agent_id, "max_records": 10, "walltime_left": 119, "free": {"cores": 3}}
    assert [x["key"] for x in api.post(f"{API}/leases", json=body).json()["leases"]] == ["c", "d"]


def test_a_skipped_key_whose_spec_differs_is_reported_with_the_fields(api: TestClient) -> None:
    c = campaign(api, "c")
    parent = {"key": "p", "command": "true"}
    first = [
        parent,
        {"key": "same", "command": "run", "params": {"T": 1}, "tags": ["a", "b"]},
        {"key": "cmd", "command": "run"},
        {"key": "par", "command": "run", "params": {"T": 1}},
        {"key": "args", "command": "run", "run_args": {"cores": 2}, "priority": 1},
        {"key": "kids", "command": "run", "parents": ["p"]},
    ]
    assert post(api, c, *first).status_code == 201
    again = [
        parent,
        {"key": "same", "command": "run", "params": {"T": 1}, "tags": ["b", "a"]},
        {"key": "cmd", "command": "run --fast"},
        {"key": "par", "command": "run", "params": {"T": 2}},
        {"key": "args", "command": "run", "run_args": {"cores": 4}, "priority": 2},
        {"key": "kids", "command": "run"},
        {"key": "new", "command": "run"},
    ]
    for flags in ({}, {"force": True}):  # the bulk path, then the general one
        r = post(api, c, *again, **flags)
        assert r.status_code == 201, r.text
        answer = r.json()
        if flags:  # force replaced exactly the changed ones: nothing skipped differs
            assert (answer["replaced"], answer["skipped"], answer["differing"]) == (4, 3, 0)
            assert answer["replaced_keys"] == ["cmd", "par", "args", "kids"]
            continue
        assert (answer["created"], answer["skipped"], answer["differing"]) == (1, 6, 4)
        assert {d["key"]: d["fields"] for d in answer["differs"]} == {
            "args": ["run_args", "priority"],
            "cmd": ["command"],
            "kids": ["parents"],
            "par": ["params"],
        }


def test_the_bulk_insert_stores_what_the_general_one_does(api: TestClient) -> None:
    """A plain submission inserts through one statement fed with all rows at once (JSON on
    SQLite, arrays on PostgreSQL); a forced one through SQLAlchemy's typed insert. Every
    column they store must be the same, awkward values included."""
    c = campaign(api)
    fields = {
        "command": "echo 'it''s' \"$X\"\nline two; ü ✓",
        "params": {"T": 300, "x": 0.5, "name": "a \"b\" ü", "ok": True},
        "priority": -2_000_000_000,
        "run_args": {"cores": 2.5, "gpus": 1, "memory": "3G", "walltime": "01:30:00",
                     "env": {"K": "v=1"}, "max_attempts": 4},
        "dataset": "ds-1.b",
        "tags": ["a", "b.c"],
    }  # fmt: skip
    bulk = {"campaign_id": c, "records": [{"key": "bulk", **fields}]}
    general = {"campaign_id": c, "force": True, "records": [{"key": "forced", **fields}]}
    for body in (bulk, general):
        r = api.post(f"{API}/records", json=body)
        assert r.status_code == 201 and r.json()["created"] == 1, r.text
    with api.app.state.db.engine.connect() as conn:
        found = conn.execute(select(REC).where(REC.c.campaign_id == c)).mappings().all()
    stored = {row["key"]: dict(row) for row in found}
    for column in ("id", "key", "created_at", "updated_at"):
        for row in stored.values():
            row.pop(column)
    assert stored["bulk"] == stored["forced"]
    assert stored["bulk"]["cores"] == 2.5 and stored["bulk"]["priority"] == -2_000_000_000
