"""Free-form documents (defaults, run_args, results) nested too deep are refused with a 422
naming the field, and change nothing; a response that cannot be built changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from farmhand import wire
from farmhand.server.tables import Campaign, Record, Run
from tests.server.helpers import API, agent, campaign, claim, counts, record, submit

DEEP = 400


def deep(levels: int = DEEP) -> dict[str, Any]:
    """A document nested `levels` deep: {"a": {"a": … {}}}."""
    document: dict[str, Any] = {}
    for _ in range(levels - 1):
        document = {"a": document}
    return document


def refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert field in detail and f"deeper than {wire.MAX_DOCUMENT_DEPTH} levels" in detail, detail


def reads_answer(api: TestClient) -> None:
    for path in ("/campaigns", "/records", "/runs", "/status"):
        assert api.get(f"{API}{path}").status_code == 200, path


def test_the_limit_itself_is_accepted(api: TestClient) -> None:
    c = campaign(api, **deep(wire.MAX_DOCUMENT_DEPTH - 1))  # the body adds one level
    assert api.get(f"{API}/campaigns/{c}").status_code == 200
    r = api.post(f"{API}/campaigns", json={"name": "d", "defaults": deep(65)})
    refused(r, "defaults")


def test_deep_campaign_defaults_are_refused(api: TestClient) -> None:
    before = api.get(f"{API}/campaigns").json()
    r = api.post(f"{API}/campaigns", json={"name": "deep", "defaults": deep()})
    refused(r, "defaults")
    assert api.get(f"{API}/campaigns").json() == before
    reads_answer(api)


def test_deep_run_args_are_refused_at_submit_and_retry(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a")
    records = [{"key": "b", "command": "x", "run_args": deep()}]
    r = api.post(f"{API}/records", json={"campaign_id": c, "records": records})
    refused(r, "records.0.run_args")
    assert counts(api, c) == {"ready": 1}
    [rec] = api.get(f"{API}/records", params={"campaign_id": c}).json()["items"]
    r = api.post(
        f"{API}/records/retry", json={"ids": [rec["id"]], "force": True, "run_args": deep()}
    )
    refused(r, "run_args")
    assert record(api, rec["id"])["temporary_run_args"] is None
    reads_answer(api)
    assert len(claim(api, agent(api))) == 1


def test_a_deep_result_is_refused_and_the_run_stays_live(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a", "b")
    a = agent(api)
    first, second = claim(api, a, 2)
    r = api.post(
        f"{API}/runs/{first['run_id']}/complete", json={"token": first["token"], "result": deep()}
    )
    refused(r, "result")
    report = {"run_id": second["run_id"], "token": second["token"], "result": [deep()]}
    r = api.post(f"{API}/runs/reports", json={"reports": [report]})
    refused(r, "reports.0.result")
    assert counts(api, c) == {"claimed": 2}
    reads_answer(api)
    r = api.post(f"{API}/runs/{first['run_id']}/complete", json={"token": first["token"]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("where", ["defaults", "run_args"])
def test_a_claim_whose_answer_cannot_be_built_leases_nothing(api: TestClient, where: str) -> None:
    """A document stored before the limit existed: the claim fails, and the record stays
    ready instead of being leased to an agent that never got the lease."""
    c = campaign(api)
    submit(api, c, "a")
    db = api.app.state.db
    with db.write() as session:
        if where == "run_args":
            session.execute(update(Record).values(run_args=deep()))
        else:
            session.execute(update(Campaign).values(defaults=deep()))
    a = agent(api)
    api_raw = TestClient(api.app, headers=dict(api.headers), raise_server_exceptions=False)
    r = api_raw.post(f"{API}/leases", json={"agent_id": a, "max_records": 1})
    assert r.status_code == 500
    with db.read() as session:
        assert session.execute(select(Record.state)).scalars().all() == ["ready"]
        assert session.execute(select(Run.id)).scalars().all() == []


BUNDLE_CAMPAIGN = {"name": "imported", "version": 1, "created_at": "2026-01-01T00:00:00Z"}


def bundle_record(**changes: Any) -> dict[str, Any]:
    run = {"id": 7, "attempt": 1, "state": "done", "claimed_at": "2026-01-01T00:00:00Z"}
    base = {
        "key": "k",
        "command": "true",
        "state": "done",
        "attempts": 1,
        "max_attempts": 3,
        "created_at": "2026-01-01T00:00:00Z",
        "runs": [run],
    }
    for name, value in changes.items():
        if name.startswith("run_"):
            run[name.removeprefix("run_")] = value
        else:
            base[name] = value
    return base


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"run_stdout_tail": "x" * (wire.MAX_TAIL_BYTES + 1)}, "records.0.runs.0.stdout_tail"),
        ({"run_error": "e" * (wire.MAX_ERROR_LENGTH + 1)}, "records.0.runs.0.error"),
        ({"run_exit_code": 2**70}, "records.0.runs.0.exit_code"),
        ({"run_run_args": deep()}, "records.0.runs.0.run_args"),
        ({"tags": ["not a tag!"]}, "records.0.tags"),
        ({"max_attempts": 2**70}, "records.0.max_attempts"),
        ({"priority": 2**40}, "records.0.priority"),
        ({"result": deep()}, "records.0.result"),
        ({"temporary_run_args": deep()}, "records.0.temporary_run_args"),
        ({"key": "a\x00b"}, "records.0.key"),
    ],
)
def test_imported_rows_meet_the_caps_of_live_reports(
    api: TestClient, changes: dict[str, Any], needle: str
) -> None:
    before = api.get(f"{API}/campaigns").json()
    body = {"campaign": BUNDLE_CAMPAIGN, "records": [bundle_record(**changes)]}
    r = api.post(f"{API}/bundles", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    assert api.get(f"{API}/campaigns").json() == before
    r = api.post(f"{API}/bundles", json={"campaign": BUNDLE_CAMPAIGN, "records": [bundle_record()]})
    assert r.status_code == 200, r.text
