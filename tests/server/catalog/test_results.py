"""A campaign's results table (CSV and JSON lines) and "what ended since a cursor", on both
databases: columns, flattening, filters, and every ending read exactly once."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from farmhand.server.catalog.results import flatten
from tests.server.helpers import API, agent, campaign, claim, ids_by_key


def post(api: TestClient, campaign_id: int, records: list[dict[str, Any]]) -> None:
    r = api.post(f"{API}/records", json={"campaign_id": campaign_id, "records": records})
    assert r.status_code == 201, r.text


def finish(api: TestClient, n: int, result: Any = None, *, fail: bool = False) -> list[str]:
    """Claim `n` records as an agent and complete (or fail) each; their keys."""
    keys = []
    for lease in claim(api, agent(api), n):
        run, token = f"{API}/runs/{lease['run_id']}", {"token": lease["token"]}
        assert api.post(f"{run}/start", json=token).status_code == 200
        if fail:
            body = {**token, "error": f"boom {lease['key']}", "exit_code": 2}
            assert api.post(f"{run}/fail", json=body).status_code == 200
        else:
            doc = result(lease) if callable(result) else {"e": -1.0}
            body = {**token, "result": doc}
            assert api.post(f"{run}/complete", json=body).status_code == 200
        keys.append(lease["key"])
    return keys


def table(api: TestClient, campaign_id: int, **query: Any) -> list[dict[str, str]]:
    r = api.get(f"{API}/campaigns/{campaign_id}/results", params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(r.text)))


@pytest.fixture
def eos(api: TestClient) -> int:
    campaign(api, "other")  # campaign ids differ from record ids
    c = campaign(api, "eos", max_attempts=1)
    post(
        api,
        c,
        [
            {"key": f"a{a}-T{T}", "command": "x", "params": {"a": a, "T": T}}
            for a in (4.0, 4.1)
            for T in (300, 600, 900)
        ],
    )
    return c


def test_flatten_joins_nested_fields_with_dots() -> None:
    doc = {"e": {"total": -3.5, "parts": {"x": 1}}, "forces": [1, 2], "empty": {}, "ok": True}
    assert flatten(doc) == {
        "e.total": -3.5, "e.parts.x": 1, "forces": [1, 2], "empty": {}, "ok": True,
    }  # fmt: skip
    assert flatten([1, 2]) == {"result": [1, 2]} and flatten(None) == {}


def test_csv_has_a_row_per_record_with_params_and_result_fields(api: TestClient, eos: int) -> None:
    def energy(lease: dict[str, Any]) -> dict[str, Any]:
        p = lease["params"]
        return {"energy": {"total": -p["a"] * p["T"] / 100}, "state": "fcc", "steps": [1, 2]}

    done = finish(api, 4, energy)
    failed = finish(api, 1, fail=True)
    rows = table(api, eos)
    assert list(rows[0]) == [
        "key", "state", "T", "a", "energy.total", "result.state", "steps",
        "attempts", "runtime_s", "error",
    ]  # fmt: skip
    assert [row["key"] for row in rows] == list(ids_by_key(api, eos))  # record id order
    by_key = {row["key"]: row for row in rows}
    first = by_key[done[0]]
    a, T = float(first["a"]), int(first["T"])
    assert float(first["energy.total"]) == pytest.approx(-a * T / 100)
    assert (first["state"], first["result.state"], first["steps"]) == ("done", "fcc", "[1,2]")
    assert first["attempts"] == "1" and float(first["runtime_s"]) >= 0
    (bad,) = failed
    assert by_key[bad]["state"] == "failed" and by_key[bad]["error"].startswith("boom")
    assert by_key[bad]["energy.total"] == "" and by_key[bad]["runtime_s"] != ""
    waiting = [row for row in rows if row["state"] == "ready"]
    assert len(waiting) == 1 and waiting[0]["runtime_s"] == "" and waiting[0]["attempts"] == "0"


def test_filters_by_state_and_params_in_both_formats(api: TestClient, eos: int) -> None:
    finish(api, 6)
    assert {row["key"] for row in table(api, eos, where="T>=600", state="done")} == {
        "a4.0-T600", "a4.0-T900", "a4.1-T600", "a4.1-T900",
    }  # fmt: skip
    r = api.get(
        f"{API}/campaigns/{eos}/results",
        params={"format": "jsonl", "where": ["a=4.1", "T<900"]},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [(row["key"], row["a"], row["T"], row["e"]) for row in rows] == [
        ("a4.1-T300", 4.1, 300, -1.0),
        ("a4.1-T600", 4.1, 600, -1.0),
    ]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"where": "b>1"}, 422, "no record of campaign"),
        ({"where": "T>"}, 422, "has no value"),
        ({"format": "xlsx"}, 422, "format"),
        ({"state": "finished"}, 422, "state"),
    ],
)
def test_a_bad_query_is_refused_before_any_row(
    api: TestClient, eos: int, query: dict[str, str], status: int, message: str
) -> None:
    r = api.get(f"{API}/campaigns/{eos}/results", params=query)
    assert r.status_code == status and message in r.text, r.text
    assert api.get(f"{API}/campaigns/99999/results").status_code == 404


def test_results_are_read_page_by_page(api: TestClient, eos: int, monkeypatch) -> None:
    from farmhand.server.catalog import results

    monkeypatch.setattr(results, "PAGE", 2)  # 6 records: 3 pages (and a last, empty look)
    finish(api, 6)
    assert len(table(api, eos)) == 6


def ended(api: TestClient, campaign_id: int, cursor: str | None, limit: int = 500) -> Any:
    query: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        query["cursor"] = cursor
    r = api.get(f"{API}/campaigns/{campaign_id}/ended", params=query)
    assert r.status_code == 200, r.text
    return r.json()


def test_each_ending_is_read_once_and_a_retried_record_again(api: TestClient, eos: int) -> None:
    first = ended(api, eos, None)
    assert (first["items"], first["more"], first["finished"]) == ([], False, False)
    done = finish(api, 2)
    page = ended(api, eos, first["cursor"])
    assert [i["key"] for i in page["items"]] == done and page["finished"] is False
    assert page["items"][0]["result"] == {"e": -1.0} and page["items"][0]["params"]
    again = ended(api, eos, page["cursor"])
    assert again["items"] == [] and again["cursor"] == page["cursor"]
    failed = finish(api, 3, fail=True)
    # A small limit: the reader follows `more`.
    part = ended(api, eos, again["cursor"], limit=2)
    assert part["more"] is True and part["finished"] is None
    rest = ended(api, eos, part["cursor"], limit=2)
    assert [i["key"] for i in part["items"] + rest["items"]] == failed and not rest["more"]
    # Retried, it ends again and is read again; from the start, everything once.
    ids = ids_by_key(api, eos)
    assert api.post(f"{API}/records/retry", json={"ids": [ids[failed[0]]]}).status_code == 200
    assert ended(api, eos, rest["cursor"])["items"] == []
    last = finish(api, 2, fail=True)  # the one never claimed, and the retried one
    assert failed[0] in last
    latest = ended(api, eos, rest["cursor"])
    assert sorted(i["key"] for i in latest["items"]) == sorted(last)
    everything = ended(api, eos, None)
    keys = [i["key"] for i in everything["items"]]
    assert sorted(keys) == sorted(ids) and len(keys) == len(set(keys))
    assert everything["finished"] is True


@pytest.mark.parametrize("cursor", ["x", "1", "1:", ":2", "-1:3", "1:2:3"])
def test_a_malformed_cursor_is_a_422(api: TestClient, eos: int, cursor: str) -> None:
    r = api.get(f"{API}/campaigns/{eos}/ended", params={"cursor": cursor})
    assert r.status_code == 422 and "GENERATION:ID" in r.text


def test_a_record_ending_during_a_poll_is_never_lost(
    api: TestClient, eos: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caught race (docs/python.md's example missed a record on PostgreSQL): a record that
    ends while a poll runs must not be answered `finished` before it was read."""
    from sqlalchemy import update

    from farmhand.server.catalog import ended as ended_module
    from farmhand.server.tables import REC

    finish(api, 5)
    cursor = ended(api, eos, None)["cursor"]
    last = ids_by_key(api, eos)["a4.1-T900"]  # the one record `finish` left ready
    real = ended_module.unstamped

    def ends_meanwhile(session: Any, campaign_id: int) -> bool:
        with api.app.state.db.write() as writer:  # the last record ends now, mid-poll
            writer.execute(update(REC).where(REC.c.id == last).values(state="done"))
        return real(session, campaign_id)

    monkeypatch.setattr(ended_module, "unstamped", ends_meanwhile)
    page = ended(api, eos, cursor)
    monkeypatch.setattr(ended_module, "unstamped", real)
    seen = [i["id"] for i in page["items"]]
    if not page["finished"]:
        later = ended(api, eos, page["cursor"])
        seen += [i["id"] for i in later["items"]]
        assert later["finished"] is True
    assert seen == [last]  # read once, and before the answer said finished
