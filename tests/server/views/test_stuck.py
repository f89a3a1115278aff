"""`GET /status`: why ready records do not move, checked against what claims really take."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from farmhand.server.tables import Agent, utcnow
from farmhand.server.views import stuck
from tests.server.helpers import API, campaign, claim, submit

GIB = 1024


def register(api: TestClient, name: str, **offers: Any) -> int:
    body = {"name": name, "host": "h", "slots": 100, **offers}
    r = api.post(f"{API}/agents", json=body)
    assert r.status_code == 201, r.text
    return r.json()["agent"]["id"]


def farm(api: TestClient) -> dict[str, Any]:
    r = api.get(f"{API}/status")
    assert r.status_code == 200, r.text
    return r.json()


def test_registration_keeps_what_the_agent_said_and_none_for_what_it_did_not(
    api: TestClient,
) -> None:
    register(api, "old")
    register(api, "new", runners=["subprocess"], resources={"cores": 8, "gpus": 0})
    register(api, "bare", runners=[])
    shown = {a["name"]: (a["runners"], a["resources"]) for a in api.get(f"{API}/agents").json()}
    assert shown == {
        "old": (None, None),
        "new": (["subprocess"], {"cores": 8, "gpus": 0, "memory_mb": None}),
        "bare": ([], None),
    }


def test_nothing_ready_or_an_agent_that_takes_anything_means_nothing_is_stuck(
    api: TestClient,
) -> None:
    assert farm(api) == {"ready": 0, "agents": {"live": 0, "draining": 0, "stale": 0}, "stuck": []}
    cid = campaign(api)
    submit(api, cid, "a", "b", runner="lammps", gpus=64)
    register(api, "old")  # said nothing: any runner, unlimited amounts
    assert farm(api)["stuck"] == []


def test_ready_records_without_a_live_agent_say_so_with_the_others(api: TestClient) -> None:
    cid = campaign(api)
    submit(api, cid, "a", "b", "c")
    assert farm(api)["stuck"] == [
        {
            "reason": "no_live_agent",
            "count": 3,
            "message": "3 ready records, no live agent",
            "runner": None,
            "needed": None,
            "largest": None,
        }
    ]
    gone = register(api, "gone")
    assert api.post(f"{API}/agents/{gone}/drain").status_code == 200
    (only,) = farm(api)["stuck"]
    assert only["message"] == "3 ready records, no live agent (1 draining)"


def test_each_reason_counts_exactly_the_records_claims_leave_behind(api: TestClient) -> None:
    cid = campaign(api)
    submit(api, cid, "plain-1", "plain-2")
    submit(api, cid, "md-1", "md-2", "md-3", runner="lammps")
    submit(api, cid, "big-1", "big-2", gpus=4)
    submit(api, cid, "wide", runner="podman", cores=6)
    submit(api, cid, "both", gpus=1, cores=8)  # a's cores and b's GPUs: no one agent has both
    submit(api, cid, "fat", memory="32G")
    small = {"cores": 8, "gpus": 0, "memory_mb": 16 * GIB}
    gpu = {"cores": 4, "gpus": 2, "memory_mb": 8 * GIB}
    a = register(api, "a", runners=["subprocess"], resources=small)
    b = register(api, "b", runners=["subprocess", "podman"], resources=gpu)
    answer = farm(api)
    assert answer["ready"] == 10 and answer["agents"]["live"] == 2
    messages = {s["reason"]: s["message"] for s in answer["stuck"]}
    assert messages == {
        "runner": "3 ready records need runner 'lammps', offered by no live agent",
        "gpus": "2 ready records need 4 GPUs; the largest live agent has 2 GPUs",
        "cores": "1 ready record needs 6 cores; the largest live agent offering runner "
        "'podman' has 4 cores",
        "memory_mb": "1 ready record needs 32 GiB memory; the largest live agent has 16 GiB memory",
        "combination": "1 ready record needs more at once than any one live agent holds "
        "(e.g. 1 GPU, 8 cores together)",
    }
    gpus = next(s for s in answer["stuck"] if s["reason"] == "gpus")
    assert (gpus["needed"], gpus["largest"], gpus["runner"]) == (4, 2, None)
    assert [s["count"] for s in answer["stuck"]] == [3, 2, 1, 1, 1]  # largest first

    # The explanation and the claim agree: each agent claims all it can, with its whole
    # resources free; what stays ready is exactly what the status called stuck.
    for agent_id, runners, free in ((a, ["subprocess"], small), (b, ["subprocess", "podman"], gpu)):
        body = {"agent_id": agent_id, "max_records": 100, "runners": runners, "free": free}
        assert api.post(f"{API}/leases", json=body).status_code == 200
    answer = farm(api)
    assert answer["ready"] == 8 == sum(s["count"] for s in answer["stuck"])


def test_stale_agents_do_not_count_as_live(api: TestClient) -> None:
    cid = campaign(api)
    submit(api, cid, "a")
    agent_id = register(api, "a", runners=["subprocess"])
    assert farm(api)["stuck"] == []
    with api.app.state.db.write() as session:
        old = utcnow() - timedelta(hours=1)
        session.execute(update(Agent).where(Agent.id == agent_id).values(last_heartbeat=old))
    (only,) = farm(api)["stuck"]
    assert only["message"] == "1 ready record, no live agent (1 stale)"
    assert claim(api, agent_id) != []  # a stale agent may still claim: it just is not counted


def test_many_profiles_fall_back_to_one_envelope_per_runner(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = campaign(api)
    submit(api, cid, "both", gpus=1, cores=8)
    submit(api, cid, "md", runner="lammps")
    register(api, "a", runners=["subprocess"], resources={"cores": 8, "gpus": 0})
    register(api, "b", runners=["subprocess"], resources={"cores": 4, "gpus": 2})
    assert {s["reason"] for s in farm(api)["stuck"]} == {"combination", "runner"}
    monkeypatch.setattr(stuck, "MAX_PROFILES", 1)
    # The envelope (8 cores, 2 GPUs) would fit "both": only the runner is still reported.
    assert [s["reason"] for s in farm(api)["stuck"]] == ["runner"]


def test_groups_past_the_limit_are_reported_as_one_remainder(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = campaign(api)
    for n in range(1, 4):
        submit(api, cid, *(f"g{n}-{i}" for i in range(n)), gpus=n)
    register(api, "cpu", runners=["subprocess"], resources={"cores": 8, "gpus": 0})
    monkeypatch.setattr(stuck, "MAX_GROUPS", 2)
    answer = {s["reason"]: (s["count"], s["message"]) for s in farm(api)["stuck"]}
    assert answer == {
        "gpus": (5, "5 ready records need 2 to 3 GPUs; the largest live agent has 0 GPUs"),
        "other": (1, "1 ready record more no live agent can take, in many different sizes"),
    }


def test_profiles_drop_those_another_covers() -> None:
    big = stuck.Profile(frozenset({"subprocess", "podman"}), cores=8, gpus=2, memory_mb=None)
    small = stuck.Profile(frozenset({"subprocess"}), cores=4, gpus=2, memory_mb=1024)
    anything = stuck.Profile(None)
    assert big.covers(small) and not small.covers(big)
    assert anything.covers(big) and not big.covers(anything)
    assert not stuck.Profile(frozenset({"x"}), cores=100).covers(small)


def test_the_overview_keeps_its_answer_while_the_live_agents_stay_the_same(
    api: TestClient,
) -> None:
    cid = campaign(api)
    submit(api, cid, "md-1", runner="lammps")
    register(api, "a", runners=["subprocess"])
    db = api.app.state.db
    kept = stuck.Recent(ttl=3600)

    def counts(recent: stuck.Recent) -> list[int]:
        with db.read() as session:
            answer = recent.explain(session, now=utcnow(), stale_after=60, ready=1)
        return [s.count for s in answer]

    assert counts(kept) == [1]
    submit(api, cid, "md-2", runner="lammps")
    assert counts(kept) == [1]  # kept: same agents, young answer
    assert counts(stuck.Recent(ttl=0)) == [2]
    register(api, "b", runners=["subprocess", "podman"])
    assert counts(kept) == [2]  # the live agents changed: computed again
    with db.read() as session:
        assert kept.explain(session, now=utcnow(), stale_after=60, ready=0) == []


def beat(api: TestClient, agent_id: int, **status: Any) -> None:
    r = api.post(f"{API}/agents/{agent_id}/heartbeat", json={"status": status})
    assert r.status_code == 200, r.text


def test_records_longer_than_any_agents_time_left_are_named(api: TestClient) -> None:
    cid = campaign(api)
    submit(api, cid, "short", walltime="30m")
    submit(api, cid, "long-1", "long-2", walltime="4h")
    submit(api, cid, "longer", walltime="1d")
    a = register(api, "a", runners=["subprocess"])
    b = register(api, "b", runners=["subprocess"])
    beat(api, a, walltime_left=3600 + 10 * 60 + 30)  # 1h 10m 30s: counted as 1h 10m
    beat(api, b, walltime_left=20 * 60)
    (walltime,) = farm(api)["stuck"]
    assert walltime == {
        "reason": "walltime",
        "count": 3,
        "message": "3 ready records need 4h 00m to 24h 00m walltime; the live agent with the "
        "most time left has 1h 10m",
        "runner": None,
        "needed": 86400.0,
        "largest": 4200.0,
    }
    # What the claim leaves behind is what the status named.
    body = {"agent_id": a, "max_records": 10, "walltime_left": 4200.0}
    assert [x["key"] for x in api.post(f"{API}/leases", json=body).json()["leases"]] == ["short"]
    assert farm(api)["ready"] == 3
    beat(api, b)  # b no longer says it has a limit: it could take them all
    assert farm(api)["stuck"] == []


def test_paused_agents_claim_nothing_and_are_named(api: TestClient) -> None:
    cid = campaign(api)
    submit(api, cid, "a", "b")
    agent_id = register(api, "a", runners=["subprocess"])
    assert farm(api)["stuck"] == []
    beat(api, agent_id, paused="disk 93.1% used, limit 90% (/scratch)")
    (only,) = farm(api)["stuck"]
    assert only["message"] == (
        "2 ready records, no live agent (1 paused: disk 93.1% used, limit 90% (/scratch))"
    )
    beat(api, agent_id)
    assert farm(api)["stuck"] == []


def test_runners_an_agent_stopped_offering_are_named_with_why(api: TestClient) -> None:
    cid = campaign(api)
    submit(api, cid, "a", "b", runner="boxed")
    submit(api, cid, "c")
    first = register(api, "n1", runners=["boxed", "subprocess"])
    second = register(api, "n2", runners=["boxed", "subprocess"])
    assert farm(api)["stuck"] == []
    why = "3 starts in a row failed; the last: podman exited 125: image not known"
    beat(api, first, broken_runners={"boxed": why})
    assert farm(api)["stuck"] == []  # n2 still offers it
    beat(api, second, broken_runners={"boxed": "2 starts in a row failed"})
    (only,) = farm(api)["stuck"]
    assert (only["reason"], only["runner"], only["count"]) == ("runner", "boxed", 2)
    assert only["message"] == (
        f"2 ready records need runner 'boxed', offered by no live agent (agent n1 stopped "
        f"offering it: {why}; 1 more live agent(s) did too)"
    )
    (shown,) = [a for a in api.get(f"{API}/agents").json() if a["name"] == "n1"]
    assert shown["status"]["broken_runners"] == {"boxed": why}
