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
        ("get", "/records", None),
        ("get", "/runs", None),
        ("get", "/snapshots", None),
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


def test_admins_list_tokens_without_secrets(api: TestClient) -> None:
    secret = token(api, "agent")
    r = api.get(f"{API}/tokens")
    assert r.status_code == 200
    listed = r.json()
    assert [(t["role"], t["name"], t["revoked"]) for t in listed] == [
        ("admin", "bootstrap", False),
        ("agent", "agent", False),
    ]
    assert secret not in r.text and ADMIN not in r.text
    assert api.get(f"{API}/tokens", headers=as_(token(api, "submitter"))).status_code == 403


def test_a_revoked_token_is_refused_at_once(api: TestClient) -> None:
    secret = token(api, "submitter")
    assert api.get(f"{API}/campaigns", headers=as_(secret)).status_code == 200  # now cached
    (row,) = [t for t in api.get(f"{API}/tokens").json() if t["role"] == "submitter"]
    r = api.post(f"{API}/tokens/{row['id']}/revoke")
    assert r.status_code == 200 and r.json() == {**row, "revoked": True}
    r = api.get(f"{API}/campaigns", headers=as_(secret))
    assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked token"
    again = api.post(f"{API}/tokens/{row['id']}/revoke")
    assert again.status_code == 200 and again.json()["revoked"] is True


def test_revoking_names_the_problem_and_changes_nothing(api: TestClient) -> None:
    other_admin, submitter = token(api, "admin"), token(api, "submitter")
    before = api.get(f"{API}/tokens").json()
    (mine,) = [t for t in before if t["name"] == "bootstrap"]
    r = api.post(f"{API}/tokens/{mine['id']}/revoke")
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"token {mine['id']} is the one this request uses; revoke it with another"
    )
    r = api.post(f"{API}/tokens/999/revoke")
    assert r.status_code == 404 and r.json()["detail"] == "token 999 does not exist"
    r = api.post(f"{API}/tokens/{mine['id']}/revoke", headers=as_(submitter))
    assert r.status_code == 403
    assert api.get(f"{API}/tokens").json() == before
    # Another admin may revoke it; the bootstrap token then stops working.
    r = api.post(f"{API}/tokens/{mine['id']}/revoke", headers=as_(other_admin))
    assert r.status_code == 200
    assert api.get(f"{API}/tokens").status_code == 401
