"""Run reports over the API: fencing, idempotency, retries, cancel via heartbeat."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.server.helpers import API, agent, campaign, claim, record, submit


def test_stale_token_is_409_and_changes_nothing(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "k")
    (lease,) = claim(api, agent(api))
    before = record(api, lease["record_id"])
    for verb, body in (
        ("start", {}),
        ("complete", {"result": {"x": 1}}),
        ("fail", {"error": "x"}),
        ("release", {}),
    ):
        r = api.post(f"{API}/runs/{lease['run_id']}/{verb}", json={"token": "not-it", **body})
        assert r.status_code == 409, verb
        assert r.json()["code"] == "stale_lease"
        assert "token does not match" in r.json()["detail"]
    assert record(api, lease["record_id"]) == before


def test_same_completion_twice_gets_the_same_answer(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "k")
    (lease,) = claim(api, agent(api))
    body = {"token": lease["token"], "result": {"energy": -3.5}, "stdout_tail": "ok\n"}
    first = api.post(f"{API}/runs/{lease['run_id']}/complete", json=body)
    second = api.post(f"{API}/runs/{lease['run_id']}/complete", json=body)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["record_state"] == "done"
    got = record(api, lease["record_id"])
    assert got["result"] == {"energy": -3.5} and len(got["runs"]) == 1
    # A different report for the ended run is refused and changes nothing.
    other = api.post(
        f"{API}/runs/{lease['run_id']}/complete", json={**body, "result": {"energy": 0}}
    )
    assert other.status_code == 409
    late_fail = api.post(
        f"{API}/runs/{lease['run_id']}/fail", json={"token": lease["token"], "error": "boom"}
    )
    assert late_fail.status_code == 409
    assert record(api, lease["record_id"])["result"] == {"energy": -3.5}


def test_failed_attempts_requeue_until_max_attempts(api: TestClient) -> None:
    c = campaign(api, max_attempts=2, retry_delay=0)  # claimable again at once
    submit(api, c, "k")
    a = agent(api)
    for attempt, expected in ((1, "ready"), (2, "failed")):
        (lease,) = claim(api, a)
        assert lease["attempt"] == attempt
        r = api.post(
            f"{API}/runs/{lease['run_id']}/fail",
            json={"token": lease["token"], "error": "exit code 3", "exit_code": 3},
        )
        assert r.json()["record_state"] == expected
    got = record(api, lease["record_id"])
    assert got["state"] == "failed" and got["attempts"] == 2 and got["error"] == "exit code 3"
    assert [run["state"] for run in got["runs"]] == ["failed", "failed"]
    assert claim(api, a) == []


def test_release_does_not_spend_an_attempt(api: TestClient) -> None:
    c = campaign(api, retry_delay=0)  # after the failure below, claimable again at once
    submit(api, c, "k")
    a = agent(api)
    (lease,) = claim(api, a)
    r = api.post(f"{API}/runs/{lease['run_id']}/release", json={"token": lease["token"]})
    assert r.json() == {
        "run_id": lease["run_id"],
        "run_state": "released",
        "record_id": lease["record_id"],
        "record_state": "ready",
        "attempts": 0,
    }
    (again,) = claim(api, a)
    assert again["attempt"] == 1
    api.post(f"{API}/runs/{again['run_id']}/fail", json={"token": again["token"], "error": "x"})
    (third,) = claim(api, a)
    r = api.post(f"{API}/runs/{third['run_id']}/release", json={"token": third["token"]})
    assert (r.json()["record_state"], r.json()["attempts"]) == ("ready", 1)
    # Giving a record back keeps the error of its last failed attempt.
    assert record(api, lease["record_id"])["error"] == "attempt 1 failed: x"


def test_cancel_reaches_the_agent_through_its_heartbeat(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "k", "other")
    a = agent(api)
    lease, other = claim(api, a, 2)
    api.post(f"{API}/runs/{lease['run_id']}/start", json={"token": lease["token"]})
    r = api.post(f"{API}/records/cancel", json={"ids": [lease["record_id"]]})
    assert r.status_code == 200 and r.json()["changed"] == [lease["record_id"]]
    beat = api.post(
        f"{API}/agents/{a}/heartbeat", json={"run_ids": [lease["run_id"], other["run_id"]]}
    ).json()
    assert beat["cancel"] == [lease["run_id"]] and beat["lost"] == [] and beat["renewed"] == 1
    late = api.post(f"{API}/runs/{lease['run_id']}/complete", json={"token": lease["token"]})
    assert late.status_code == 409 and "cancelled" in late.json()["detail"]
    assert record(api, lease["record_id"])["state"] == "cancelled"


def test_illegal_transition_names_both_states(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "k")
    (lease,) = claim(api, agent(api))
    api.post(f"{API}/runs/{lease['run_id']}/complete", json={"token": lease["token"]})
    r = api.post(f"{API}/records/cancel", json={"ids": [lease["record_id"]]})
    assert r.status_code == 409
    assert "from done to cancelled" in r.json()["detail"]
    r = api.post(f"{API}/records/retry", json={"ids": [lease["record_id"]]})
    assert r.status_code == 200 and r.json()["changed"] == []
    (skipped,) = r.json()["skipped"]
    assert skipped["key"] == "k" and "--force --force-ignores-success" in skipped["reason"]


def test_retry_gives_fresh_attempts(api: TestClient) -> None:
    c = campaign(api, max_attempts=1)
    submit(api, c, "k")
    a = agent(api)
    (lease,) = claim(api, a)
    api.post(f"{API}/runs/{lease['run_id']}/fail", json={"token": lease["token"], "error": "x"})
    assert record(api, lease["record_id"])["state"] == "failed"
    r = api.post(f"{API}/records/retry", json={"ids": [lease["record_id"]]})
    assert r.status_code == 200
    got = record(api, lease["record_id"])
    assert (got["state"], got["attempts"], got["error"]) == ("ready", 0, None)
    assert claim(api, a)[0]["attempt"] == 1


def test_records_listing_pages_by_keyset_and_filters(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, *[f"k{i:02d}" for i in range(25)])
    seen, after = [], None
    while True:
        params = {"campaign_id": c, "limit": 10, **({"after": after} if after else {})}
        page = api.get(f"{API}/records", params=params).json()
        seen += [item["key"] for item in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [f"k{i:02d}" for i in range(25)]
    (lease,) = claim(api, agent(api))
    claimed = api.get(f"{API}/records", params={"state": "claimed"}).json()["items"]
    assert [r["id"] for r in claimed] == [lease["record_id"]]
    by_key = api.get(f"{API}/records", params={"key": "k07"}).json()["items"]
    assert [r["key"] for r in by_key] == ["k07"]


def test_derived_run_args_merge_campaign_defaults_and_record_overrides(api: TestClient) -> None:
    c = campaign(api, max_attempts=2, walltime=60, env={"A": "1"})
    submit(api, c, "k", walltime=600)
    (lease,) = claim(api, agent(api))
    assert lease["run_args"] == {"max_attempts": 2, "walltime": 600, "env": {"A": "1"}}
    got = record(api, lease["record_id"])
    assert got["run_args"] == {"walltime": 600}
    assert got["derived_run_args"] == lease["run_args"] and got["max_attempts"] == 2


def test_skipped_keys_are_reported(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a", "b")
    r = api.post(
        f"{API}/records",
        json={
            "campaign_id": c,
            "records": [{"key": "b", "command": "x"}, {"key": "c", "command": "y"}],
        },
    )
    assert r.json() == {
        "created": 1,
        "skipped": 1,
        "replaced": 0,
        "replaced_keys": [],
        "skipped_keys": ["b"],
        "differing": 1,  # `submit` made "b" with the command "echo b"
        "differs": [{"key": "b", "fields": ["command"]}],
        "created_campaign": None,
        "dry_run": False,
    }


def test_a_draining_agent_renews_but_gets_no_new_leases(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "held", "other")
    a = agent(api)
    (lease,) = claim(api, a)
    r = api.post(f"{API}/agents/{a}/drain")
    assert r.status_code == 200 and r.json()["state"] == "draining"
    r = api.post(f"{API}/leases", json={"agent_id": a, "max_records": 1})
    assert r.status_code == 409 and "draining" in r.json()["detail"]
    beat = api.post(f"{API}/agents/{a}/heartbeat", json={"run_ids": [lease["run_id"]]})
    assert beat.status_code == 200 and beat.json()["renewed"] == 1
    api.post(f"{API}/runs/{lease['run_id']}/release", json={"token": lease["token"]})
    assert api.post(f"{API}/agents/{a}/stop").json()["state"] == "stopped"
    assert api.post(f"{API}/agents/{a}/drain").status_code == 409


def test_batch_reports_are_fenced_and_answered_one_by_one(api: TestClient) -> None:
    c = campaign(api, max_attempts=1)
    submit(api, c, "ok", "bad", "stale")
    ok, bad, stale = claim(api, agent(api), 3)
    good = {"run_id": ok["run_id"], "token": ok["token"], "result": {"v": 1}}
    reports = [
        good,
        {"run_id": bad["run_id"], "token": bad["token"], "error": "exit code 2", "exit_code": 2},
        {"run_id": stale["run_id"], "token": "not-it"},
        {"run_id": 999, "token": "x"},
        good,  # a repeat inside the same batch gets the same answer
    ]
    r = api.post(f"{API}/runs/reports", json={"reports": reports})
    assert r.status_code == 200, r.text
    answers = r.json()["answers"]
    assert [a["run_id"] for a in answers] == [
        ok["run_id"],
        bad["run_id"],
        stale["run_id"],
        999,
        ok["run_id"],
    ]
    assert answers[0]["ack"]["record_state"] == "done" and answers[0]["error"] is None
    assert answers[1]["ack"]["record_state"] == "failed"
    assert answers[2]["error"]["code"] == "stale_lease" and answers[2]["ack"] is None
    assert answers[3]["error"]["code"] == "not_found"
    assert answers[4] == answers[0]
    assert record(api, ok["record_id"])["result"] == {"v": 1}
    assert record(api, bad["record_id"])["error"] == "exit code 2"
    untouched = record(api, stale["record_id"])
    assert untouched["state"] == "claimed" and untouched["runs"][0]["state"] == "leased"
    again = api.post(f"{API}/runs/reports", json={"reports": reports[:2]})
    assert again.json()["answers"] == answers[:2]


def test_batch_starts_are_fenced_and_answered_one_by_one(api: TestClient) -> None:
    """`POST /runs/starts`: what an agent sends while its commands already run (issue 16)."""
    c = campaign(api)
    submit(api, c, "ok", "stale", "ended")
    ok, stale, ended = claim(api, agent(api), 3)
    done = {"token": ended["token"], "result": {"v": 1}}
    assert api.post(f"{API}/runs/{ended['run_id']}/complete", json=done).status_code == 200
    starts = [
        {"run_id": ok["run_id"], "token": ok["token"]},
        {"run_id": stale["run_id"], "token": "not-it"},
        {"run_id": ended["run_id"], "token": ended["token"]},
        {"run_id": 999, "token": "x"},
        {"run_id": ok["run_id"], "token": ok["token"]},  # a repeat is harmless
    ]
    r = api.post(f"{API}/runs/starts", json={"starts": starts})
    assert r.status_code == 200, r.text
    answers = r.json()["answers"]
    assert [a["run_id"] for a in answers] == [s["run_id"] for s in starts]
    assert answers[0]["ack"]["run_state"] == "running" and answers[0]["error"] is None
    assert answers[0]["ack"]["record_state"] == "running"
    assert answers[1]["error"]["code"] == "stale_lease" and answers[1]["ack"] is None
    assert answers[2]["error"]["code"] == "stale_lease"  # its run already ended as done
    assert "already ended as done" in answers[2]["error"]["detail"]
    assert answers[3]["error"]["code"] == "not_found"
    assert answers[4] == answers[0]
    started = record(api, ok["record_id"])
    assert started["state"] == "running" and started["runs"][0]["started_at"] is not None
    untouched = record(api, stale["record_id"])
    assert untouched["state"] == "claimed" and untouched["runs"][0]["started_at"] is None
    assert record(api, ended["record_id"])["state"] == "done"
    empty = api.post(f"{API}/runs/starts", json={"starts": []})
    assert empty.status_code == 422


def test_every_verb_goes_through_the_batch_as_through_its_own_endpoint(api: TestClient) -> None:
    """One report shape (issue 16): complete, fail, release and orphan in one batch do what
    their per-run endpoints do, and a repeat through either way gets the same answer."""
    c = campaign(api, max_attempts=2)
    submit(api, c, "done", "retried", "given-back", "orphan")
    done, retried, given_back, orphan = claim(api, agent(api), 4)
    reports = [
        {"run_id": done["run_id"], "token": done["token"], "verb": "complete", "result": {"v": 2}},
        {"run_id": retried["run_id"], "token": retried["token"], "verb": "fail", "error": "x"},
        {"run_id": given_back["run_id"], "token": given_back["token"], "verb": "release"},
        {
            "run_id": orphan["run_id"],
            "token": orphan["token"],
            "verb": "orphan",
            "reason": "no runner 'podman'",
        },
    ]
    r = api.post(f"{API}/runs/reports", json={"reports": reports})
    assert r.status_code == 200, r.text
    acks = [a["ack"] for a in r.json()["answers"]]
    assert [(a["run_state"], a["record_state"], a["attempts"]) for a in acks] == [
        ("done", "done", 1),
        ("failed", "ready", 1),
        ("released", "ready", 0),
        ("orphaned", "orphaned", 0),
    ]
    assert record(api, done["record_id"])["result"] == {"v": 2}
    assert record(api, retried["record_id"])["error"] == "attempt 1 failed: x"
    assert record(api, orphan["record_id"])["error"] == "orphaned: no runner 'podman'"
    # The per-run endpoints are aliases: the same report through them is a replay.
    again = api.post(
        f"{API}/runs/{given_back['run_id']}/release", json={"token": given_back["token"]}
    )
    assert again.status_code == 200 and again.json() == acks[2]
    body = {"token": orphan["token"], "reason": "no runner 'podman'"}
    again = api.post(f"{API}/runs/{orphan['run_id']}/orphan", json=body)
    assert again.status_code == 200 and again.json() == acks[3]
    other = api.post(f"{API}/runs/{orphan['run_id']}/orphan", json={**body, "reason": "other"})
    assert other.status_code == 409


def test_a_report_with_fields_its_verb_does_not_take_is_refused(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "k")
    (lease,) = claim(api, agent(api))
    before = record(api, lease["record_id"])
    item = {"run_id": lease["run_id"], "token": lease["token"]}
    for bad, words in (
        ({"verb": "release", "result": {"v": 1}}, "'release' reports do not take result"),
        ({"verb": "orphan"}, "'orphan' reports need reason"),
        ({"verb": "complete", "error": "x"}, "'complete' reports do not take error"),
        ({"verb": "fail"}, "'fail' reports need error"),
        ({"verb": "finish"}, "verb"),
    ):
        r = api.post(f"{API}/runs/reports", json={"reports": [{**item, **bad}]})
        assert r.status_code == 422, bad
        assert words in r.text, r.text
    assert record(api, lease["record_id"]) == before


def test_a_start_that_comes_with_its_report_is_kept_between_claim_and_end(
    api: TestClient,
) -> None:
    """An agent whose command ended before it sent the start puts `started_at` in the
    report: the run shows it, clamped to [claimed_at, ended_at]; a run whose start was
    reported keeps that one."""
    c = campaign(api)
    submit(api, c, "early", "late", "inside", "started")
    early, late, inside, started = claim(api, agent(api), 4)
    assert api.post(f"{API}/runs/{started['run_id']}/start", json={"token": started["token"]})
    reports = [
        {"run_id": early["run_id"], "token": early["token"], "started_at": "2000-01-01T00:00:00Z"},
        {"run_id": late["run_id"], "token": late["token"], "started_at": "2999-01-01T00:00:00Z"},
        {
            "run_id": started["run_id"],
            "token": started["token"],
            "started_at": "2000-01-01T00:00:00Z",
        },
    ]
    assert api.post(f"{API}/runs/reports", json={"reports": reports}).status_code == 200
    (early_run,) = record(api, early["record_id"])["runs"]
    assert early_run["started_at"] == early_run["claimed_at"]
    (late_run,) = record(api, late["record_id"])["runs"]
    assert late_run["started_at"] == late_run["ended_at"]
    (started_run,) = record(api, started["record_id"])["runs"]
    assert started_run["claimed_at"] <= started_run["started_at"] <= started_run["ended_at"]
    assert not started_run["started_at"].startswith("2000")
    body = {"token": inside["token"], "started_at": late_run["ended_at"]}
    assert api.post(f"{API}/runs/{inside['run_id']}/complete", json=body).status_code == 200
    (inside_run,) = record(api, inside["record_id"])["runs"]
    assert inside_run["started_at"] == late_run["ended_at"]
    release = {"run_id": 1, "token": "t", "verb": "release", "started_at": "2000-01-01T00:00:00Z"}
    r = api.post(f"{API}/runs/reports", json={"reports": [release]})
    assert r.status_code == 422 and "do not take started_at" in r.text
