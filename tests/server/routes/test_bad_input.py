"""Bad input gets a clear 4xx naming the problem and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from farmhand import wire
from tests.server.helpers import API, agent, campaign, claim, counts, ids_by_key, submit


@pytest.fixture
def world(api: TestClient) -> tuple[TestClient, int, int]:
    c = campaign(api)
    submit(api, c, "a", "b")
    return api, c, agent(api)


#: Stand-ins in request bodies for the ids of the world's campaign and agent.
CAMPAIGN, AGENT = "<campaign>", "<agent>"


def unchanged(api: TestClient, c: int) -> Callable[[], None]:
    before = counts(api, c)
    runs = api.get(f"{API}/runs").json()["items"]

    def check() -> None:
        assert counts(api, c) == before
        assert api.get(f"{API}/runs").json()["items"] == runs

    return check


def test_malformed_json_is_422(world: tuple[TestClient, int, int]) -> None:
    api, c, _ = world
    check = unchanged(api, c)
    r = api.post(
        f"{API}/records",
        content=b'{"campaign_id": 1, "records": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert "not valid JSON" in r.json()["detail"]
    check()


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/records", {"campaign_id": CAMPAIGN, "records": []}, "records"),
        ("/records", {"campaign_id": CAMPAIGN, "records": [{"key": "", "command": "x"}]}, "key"),
        (
            "/records",
            {"campaign_id": CAMPAIGN, "records": [{"key": "z", "command": "  "}]},
            "command is blank",
        ),
        (
            "/records",
            {"campaign_id": CAMPAIGN, "records": [{"key": "z", "command": "x", "bogus": 1}]},
            "bogus",
        ),
        (
            "/records",
            {
                "campaign_id": CAMPAIGN,
                "records": [{"key": "z", "command": "x" * (wire.MAX_COMMAND_LENGTH + 1)}],
            },
            "command",
        ),
        (
            "/records",
            {
                "campaign_id": CAMPAIGN,
                "records": [{"key": "z", "command": "x"}, {"key": "z", "command": "y"}],
            },
            "key 'z' appears twice",
        ),
        (
            "/records",
            {
                "campaign_id": CAMPAIGN,
                "records": [{"key": "z", "command": "x", "run_args": {"max_attempts": 0}}],
            },
            "max_attempts",
        ),
        ("/campaigns", {"name": "has space"}, "name"),
        ("/leases", {"agent_id": AGENT, "max_records": 0}, "max_records"),
        ("/leases", {"agent_id": AGENT, "wait": 3600}, "wait"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    world: tuple[TestClient, int, int], path: str, body: dict, needle: str
) -> None:
    api, c, a = world
    body = {
        k: {CAMPAIGN: c, AGENT: a}.get(v, v) if isinstance(v, str) else v for k, v in body.items()
    }
    check = unchanged(api, c)
    r = api.post(API + path, json=body)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    check()


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("get", "/records/999", None, "record 999"),
        ("get", "/campaigns/999", None, "campaign 999"),
        (
            "post",
            "/records",
            {"campaign_id": 999, "records": [{"key": "k", "command": "x"}]},
            "campaign 999",
        ),
        ("post", "/records/cancel", {"ids": [1, 999]}, "999"),
        ("post", "/records/retry", {"ids": [999]}, "999"),
        ("post", "/runs/999/complete", {"token": "t"}, "run 999"),
        ("post", "/agents/999/heartbeat", {"run_ids": []}, "agent 999"),
        ("post", "/leases", {"agent_id": 999}, "agent 999"),
    ],
)
def test_unknown_ids_are_404(
    world: tuple[TestClient, int, int], method: str, path: str, body: dict | None, needle: str
) -> None:
    api, c, _ = world
    check = unchanged(api, c)
    r = api.request(method, API + path, json=body)
    assert r.status_code == 404, r.text
    assert needle in r.json()["detail"]
    check()


def test_server_side_command_limit(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_command_length=10)
    c = campaign(api)
    r = api.post(
        f"{API}/records",
        json={
            "campaign_id": c,
            "records": [
                {"key": "ok", "command": "echo"},
                {"key": "big", "command": "echo 12345678"},
            ],
        },
    )
    assert r.status_code == 422
    assert "record 'big'" in r.json()["detail"] and "limit is 10" in r.json()["detail"]
    assert counts(api, c) == {}


def test_oversized_body_is_413(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_body_bytes=2048)
    c = campaign(api)
    records = [{"key": f"k{i}", "command": "echo hello"} for i in range(200)]
    r = api.post(f"{API}/records", json={"campaign_id": c, "records": records})
    assert r.status_code == 413 and "limit is 2048" in r.json()["detail"]
    assert counts(api, c) == {}


def test_cancel_is_all_or_nothing(world: tuple[TestClient, int, int]) -> None:
    api, c, a = world
    (lease,) = claim(api, a)
    api.post(f"{API}/runs/{lease['run_id']}/complete", json={"token": lease["token"]})
    check = unchanged(api, c)
    ready = ids_by_key(api, c)["b"]
    r = api.post(f"{API}/records/cancel", json={"ids": [ready, lease["record_id"]]})
    assert r.status_code == 409
    check()
