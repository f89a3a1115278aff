"""Values that used to reach the database or a comparison and answer 500: whole numbers the
database cannot hold, non-ASCII lease tokens, NUL characters, a 405 without `Allow`, a
guessable admin token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from farmhand.server.errors import Forbidden
from farmhand.server.storage.snapshots import parse_lease_header
from tests.server.helpers import API, agent, campaign, claim, counts, submit

HUGE = 2**70  # beyond 64 bits: SQLite cannot bind it
BIG = 2**40  # beyond 32 bits: PostgreSQL's INTEGER columns cannot hold it
LARGEST = 2**31 - 1  # wire.MAX_INT


@pytest.fixture
def world(api: TestClient) -> tuple[TestClient, int, dict[str, Any]]:
    c = campaign(api)
    submit(api, c, "a", "b")
    [lease] = claim(api, agent(api))
    return api, c, lease


@pytest.mark.parametrize("number", [HUGE, BIG, -HUGE])
@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("get", "/campaigns/{n}", None, "campaign_id"),
        ("get", "/records/{n}", None, "record_id"),
        ("get", "/records?after={n}", None, "after"),
        ("get", "/records?campaign_id={n}", None, "campaign_id"),
        ("get", "/runs?after={n}", None, "after"),
        ("get", "/bundles/{n}", None, "campaign_id"),
        ("post", "/agents/{n}/drain", None, "agent_id"),
        ("post", "/runs/{n}/start", {"token": "t"}, "run_id"),
        ("post", "/records/cancel", {"ids": ["n"]}, "ids.0"),
        ("post", "/records/retry", {"ids": ["n"]}, "ids.0"),
        ("post", "/leases", {"agent_id": "n"}, "agent_id"),
        ("post", "/agents/1/heartbeat", {"run_ids": ["n"]}, "run_ids.0"),
        (
            "post",
            "/records",
            {"campaign_id": 1, "records": [{"key": "z", "command": "x", "priority": "n"}]},
            "records.0.priority",
        ),
        ("post", "/records", {"campaign_id": "n", "records": [{"key": "z", "command": "x"}]}, ""),
        ("post", "/runs/{run}/fail", {"token": "{token}", "error": "e", "exit_code": "n"}, ""),
        ("post", "/runs/{run}/complete", {"token": "{token}", "exit_code": "n"}, "exit_code"),
    ],
)
def test_numbers_the_database_cannot_hold_are_422(
    world: tuple[TestClient, int, dict[str, Any]],
    number: int,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    needle: str,
) -> None:
    api, c, lease = world
    before = counts(api, c)

    def fill(value: Any) -> Any:
        if value == "n":
            return number
        if value == "{token}":
            return lease["token"]
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    url = API + path.replace("{n}", str(number)).replace("{run}", str(lease["run_id"]))
    r = api.request(method, url, json=fill(body))
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    assert counts(api, c) == before


def test_the_largest_id_is_a_plain_404(api: TestClient) -> None:
    r = api.get(f"{API}/records/{LARGEST}")
    assert r.status_code == 404, r.text
    assert api.get(f"{API}/records/{LARGEST + 1}").status_code == 422


@pytest.mark.parametrize("token", ["é", "\u2603" * 40, "\ud800", "tok\x00en"])
def test_a_non_ascii_lease_token_is_stale_not_500(
    world: tuple[TestClient, int, dict[str, Any]], token: str
) -> None:
    api, c, lease = world
    run = lease["run_id"]

    def post(path: str, body: dict[str, Any]) -> Any:  # escaped: a lone surrogate is JSON too
        headers = {"content-type": "application/json"}
        return api.post(f"{API}{path}", content=json.dumps(body), headers=headers)

    for verb, body in (("complete", {}), ("fail", {"error": "e"}), ("release", {})):
        r = post(f"/runs/{run}/{verb}", {"token": token, **body})
        assert r.status_code in (409, 422), r.text
    r = post("/runs/reports", {"reports": [{"run_id": run, "token": token}]})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["answers"][0]["error"]["code"] == "stale_lease"
    assert counts(api, c) == {"ready": 1, "claimed": 1}


@pytest.mark.parametrize(
    "header", ["²:x".encode("latin-1"), b"1:\xe9", b"99999999999999:x", b"9" * 30 + b":x"]
)
def test_a_bad_lease_header_is_refused_not_500(
    world: tuple[TestClient, int, dict[str, Any]], header: bytes
) -> None:
    api, _, _ = world
    r = api.post(f"{API}/tokens", json={"role": "agent"})
    secret = r.json()["token"]
    sha = "0" * 64
    r = api.put(
        f"{API}/snapshots/{sha}",
        content=b"x",
        headers={"Authorization": f"Bearer {secret}", "X-Farmhand-Lease": header},  # type: ignore[dict-item]
    )
    assert r.status_code in (403, 409), r.text
    assert api.get(f"{API}/snapshots/{sha}/info").status_code == 404


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"key": "a\x00b", "command": "x"}, "records.1.key"),
        ({"key": "k", "command": "echo \x00"}, "records.1.command"),
        ({"key": "k", "command": "x", "run_args": {"env": {"A": "\x00"}}}, "records.1.run_args"),
        ({"key": "k", "command": "x", "run_args": {"a\x00": 1}}, "records.1.run_args"),
    ],
)
def test_nul_characters_are_refused_at_submit(
    api: TestClient, spec: dict[str, Any], needle: str
) -> None:
    c = campaign(api)
    records = [{"key": "fine", "command": "x"}, spec]
    r = api.post(f"{API}/records", json={"campaign_id": c, "records": records})
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"] and "NUL" in r.json()["detail"]
    assert counts(api, c) == {}


def test_nul_characters_are_refused_in_reports(
    world: tuple[TestClient, int, dict[str, Any]],
) -> None:
    api, c, lease = world
    run, token = lease["run_id"], lease["token"]
    for verb, body in (
        ("fail", {"error": "bad\x00"}),
        ("fail", {"error": "e", "stderr_tail": "\x00"}),
        ("complete", {"result": {"a": "\x00"}}),
    ):
        r = api.post(f"{API}/runs/{run}/{verb}", json={"token": token, **body})
        assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text
    assert counts(api, c) == {"ready": 1, "claimed": 1}


def test_405_names_the_allowed_methods(api: TestClient) -> None:
    r = api.delete(f"{API}/campaigns")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    r = api.put(f"{API}/records/1")
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_a_guessable_admin_token_stops_the_server_at_start(tmp_path: Path) -> None:
    env = {"FARMHAND_ADMIN_TOKEN": "abc", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "farmhand", "server", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "FARMHAND_ADMIN_TOKEN" in lines[0] and "16" in lines[0], lines
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("value", ["²:x", "\u0661:x", "9" * 5000 + ":x", ":x", "1:", None])
def test_lease_headers_that_name_no_run_are_forbidden(value: str | None) -> None:
    with pytest.raises(Forbidden):
        parse_lease_header(value)


@pytest.mark.parametrize("body", [b'{"name": "\xc3\x28"}', b"\x80", b"[" * 100_000])
def test_a_body_json_cannot_read_is_422_like_any_bad_json(api: TestClient, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    r = api.post(f"{API}/campaigns", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert "request body is not valid JSON" in r.json()["detail"]
    assert api.get(f"{API}/campaigns").json() == []


@pytest.mark.parametrize(
    "query",
    [
        "/records?key=a%00b",
        "/records?dataset=a%00",
        "/campaigns?name=a%00",
        "/snapshots?after=a%00",
    ],
)
def test_a_nul_in_a_query_parameter_is_422(api: TestClient, query: str) -> None:
    r = api.get(f"{API}{query}")
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text
