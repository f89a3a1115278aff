"""The gate (server/serving/gate.py): no body is read before the token is checked, and a body is
capped while it streams in, with or without a Content-Length. Driven at the ASGI level, so
each test counts exactly how much of the body the app asked for."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.testclient import TestClient

from farmhand.server import auth
from farmhand.server.routes import deps
from farmhand.server.serving import gate
from tests.conftest import ADMIN
from tests.server.helpers import API, campaign, counts

CHUNK = b" " * 65536  # JSON whitespace: any number of them is still a valid body


def asgi(
    api: TestClient, method: str, path: str, chunks: Iterator[bytes], headers: dict[str, str]
) -> tuple[int, dict[str, Any], int]:
    """Send a chunked request straight to the app; (status, JSON answer, chunks it read).
    For a 401 or 413 the answer also says what its `Connection` header was."""
    taken = 0
    headers = {"content-type": "application/json", **headers}

    async def receive() -> dict[str, Any]:
        nonlocal taken
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        taken += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    answer: dict[str, Any] = {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = dict(message["headers"])
        else:
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"transfer-encoding", b"chunked"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    api.portal.call(api.app, scope, receive, send)  # type: ignore[union-attr]
    body = json.loads(answer["body"])
    if answer["status"] in (401, 413):  # the rest of the body is never read: hang up
        body["connection"] = answer["headers"].get(b"connection")
    return answer["status"], body, taken


def records_body(campaign_id: int, n: int, padding: int) -> Iterator[bytes]:
    """A valid records body of `n` records followed by `padding` chunks of whitespace."""
    records = [{"key": f"k{i}", "command": "true"} for i in range(n)]
    yield json.dumps({"campaign_id": campaign_id, "records": records}).encode()
    for _ in range(padding):
        yield CHUNK


def test_no_token_is_401_before_a_byte_of_the_body_is_read(api: TestClient) -> None:
    c = campaign(api)
    for headers in ({}, {"Authorization": "Bearer fh_wrong"}, {"Authorization": "Basic x"}):
        status, body, taken = asgi(api, "POST", f"{API}/records", records_body(c, 3, 1000), headers)
        assert (status, body["code"], taken) == (401, "unauthorized", 0)
        assert body["connection"] == b"close"
    assert counts(api, c) == {}


def test_a_chunked_body_over_the_limit_is_413_as_soon_as_it_passes(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(max_body_bytes=1024 * 1024)
    c = campaign(api)
    auth_header = {"Authorization": f"Bearer {ADMIN}"}
    status, body, taken = asgi(api, "POST", f"{API}/records", records_body(c, 3, 100), auth_header)
    assert (status, body["code"]) == (413, "too_large")
    assert "limit of 1048576 bytes" in body["detail"] and body["connection"] == b"close"
    assert taken <= 1 + 1024 * 1024 // len(CHUNK) + 1  # not one chunk more than needed
    assert counts(api, c) == {}
    # Under the limit, the same chunked body is read in full and stored.
    json_type = {"content-type": "application/json"}
    ok = api.post(f"{API}/records", content=records_body(c, 3, 10), headers=json_type)
    assert ok.status_code == 201 and counts(api, c) == {"ready": 3}


def test_snapshot_uploads_keep_their_own_cap_while_streaming(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(max_body_bytes=1024 * 1024, max_snapshot_bytes=3 * 1024 * 1024)
    sha = "0" * 64
    auth_header = {"Authorization": f"Bearer {ADMIN}"}
    status, body, taken = asgi(
        api, "PUT", f"{API}/snapshots/{sha}", iter([CHUNK] * 100), auth_header
    )
    assert (status, body["code"]) == (413, "too_large")
    assert 1024 * 1024 // len(CHUNK) < taken <= 3 * 1024 * 1024 // len(CHUNK) + 1


def test_the_route_reuses_the_gates_lookup(api: TestClient, monkeypatch) -> None:
    looked_up: list[str] = []
    real = deps.identify

    async def counted(state: Any, secret: str | None) -> deps.Caller:
        looked_up.append(secret or "")
        return await real(state, secret)

    monkeypatch.setattr(deps, "identify", counted)
    monkeypatch.setattr(gate, "identify", counted)
    assert api.get(f"{API}/campaigns").status_code == 200
    assert looked_up == [ADMIN]  # once, by the gate; the dependency took it from the scope
    assert auth.digest(ADMIN) in api.app.state.token_cache  # type: ignore[union-attr]


def test_pages_still_log_in_with_a_cookie(api: TestClient) -> None:
    page = api.get("/", headers={"Authorization": ""}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    login = api.post("/login", data={"token": ADMIN, "next": "/"}, follow_redirects=False)
    assert login.status_code == 303
    assert api.get("/", follow_redirects=False).status_code == 200


def test_page_forms_outside_the_api_are_capped_small(api: TestClient) -> None:
    # The login form is read before anyone is known: it may not be more than 64 KiB.
    form = {"content-type": "application/x-www-form-urlencoded"}
    status, body, taken = asgi(api, "POST", "/login", iter([b"token=" + CHUNK] * 100), form)
    assert (status, body["code"]) == (413, "too_large") and taken <= 2
    big = api.post("/login", content=b"token=" + b"x" * (gate.FORM_LIMIT + 1), headers=form)
    assert big.status_code == 413
