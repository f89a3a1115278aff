"""Bearer tokens: roles, 401/403, and the bootstrap admin token."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from farmhand.server.app import create_app
from farmhand.server.settings import Settings
from tests.conftest import ADMIN
from tests.server.helpers import API, agent, campaign, submit


def token(api: TestClient, role: str) -> str:
    r = api.post(f"{API}/tokens", json={"role": role, "name": role})
    assert r.status_code == 201, r.text
    assert r.json()["role"] == role
    return r.json()["token"]


def as_(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {"Authorization": ""}


def test_missing_or_wrong_token_is_401(api: TestClient) -> None:
    for headers in (as_(None), as_("fh_wrong")):
        r = api.get(f"{API}/campaigns", headers=headers)
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
    assert api.get("/healthz", headers=as_(None)).status_code == 200


def test_agent_tokens_reach_only_agent_lease_and_run_endpoints(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "k")
    secret = token(api, "agent")
    for method, path, body in (
        ("get", "/campaigns", None),
        ("get", "/records", None),
        ("post", "/records", {"campaign_id": c, "records": [{"key": "x", "command": "y"}]}),
        ("post", "/records/cancel", {"ids": [1]}),
        ("post", "/tokens", {"role": "admin"}),
    ):
        r = api.request(method, API + path, json=body, headers=as_(secret))
        assert r.status_code == 403, path
        assert "agent token may not" in r.json()["detail"]
    r = api.post(f"{API}/agents", json={"name": "a", "host": "h", "slots": 1}, headers=as_(secret))
    assert r.status_code == 201
    r = api.post(f"{API}/leases", json={"agent_id": r.json()["agent"]["id"]}, headers=as_(secret))
    assert r.status_code == 200 and len(r.json()["leases"]) == 1


def test_submitters_cannot_claim_or_make_tokens(api: TestClient) -> None:
    a = agent(api)
    secret = token(api, "submitter")
    assert api.post(f"{API}/leases", json={"agent_id": a}, headers=as_(secret)).status_code == 403
    assert api.post(f"{API}/tokens", json={"role": "admin"}, headers=as_(secret)).status_code == 403
    assert api.get(f"{API}/campaigns", headers=as_(secret)).status_code == 200


def test_tokens_are_stored_hashed(api: TestClient) -> None:
    secret = token(api, "agent")
    with api.app.state.db.read() as session:
        rows = session.execute(text("SELECT * FROM token")).all()
    assert len(rows) == 2  # the bootstrap admin token and this one
    assert secret not in repr(rows) and ADMIN not in repr(rows)


def test_first_start_generates_an_admin_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"

    def start() -> Callable[[], None]:
        return TestClient(create_app(Settings(data_dir=data)))

    with start() as client:
        path = data / "admin.token"
        secret = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert secret in capsys.readouterr().err
        r = client.get(f"{API}/campaigns", headers=as_(secret))
        assert r.status_code == 200
    with start() as client:
        assert path.read_text().strip() == secret
        assert secret not in capsys.readouterr().err  # printed once only
        assert client.get(f"{API}/campaigns", headers=as_(secret)).status_code == 200
