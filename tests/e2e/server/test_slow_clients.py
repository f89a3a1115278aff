"""Slow clients against a real server: half-sent requests are closed after the header
timeout, a stalled body after the body timeout; slow-but-moving requests and long polls are
left alone; above the connection cap requests get 503 and the server recovers."""

from __future__ import annotations

import json
import time

import httpx

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.rawhttp import closed_by_server, connect, still_open

API = wire.API_PREFIX
HALF_OPEN = 300


def test_half_sent_requests_are_closed_after_the_header_timeout(live_server_factory) -> None:
    server: LiveServer = live_server_factory(header_timeout=1)
    sockets = [connect(server.port) for _ in range(HALF_OPEN)]
    for i, sock in enumerate(sockets):
        if i % 10:  # and every tenth sends nothing at all
            sock.sendall(b"GET /healthz HT" if i % 2 else b"POST /api/v1/leases HTTP/1.1\r\nHo")
    left_open = still_open(sockets)
    for sock in sockets:
        sock.close()
    assert left_open == []
    assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200


def test_a_stalled_body_is_closed_after_the_body_timeout(live_server_factory) -> None:
    server: LiveServer = live_server_factory(body_timeout=1)
    sock = connect(server.port)
    head = f"POST {API}/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.admin_token}"
    sock.sendall(
        f"{head}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode()
    )
    assert closed_by_server(sock)
    sock.close()


def test_a_slow_but_moving_request_still_works(live_server_factory) -> None:
    # Each pause is well inside the timeouts; the whole request takes longer than both.
    server: LiveServer = live_server_factory(header_timeout=3, body_timeout=2)
    admin = server.client()
    campaign = admin.create_campaign("slow")
    records = [{"key": f"k{i}", "command": "true"} for i in range(3)]
    body = json.dumps({"campaign_id": campaign.id, "records": records}).encode()
    head = (
        f"POST {API}/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.admin_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = connect(server.port)
    for piece in (head[:20], head[20:]):
        sock.sendall(piece)
        time.sleep(0.4)  # a slow client, on purpose
    step = len(body) // 8 + 1
    for start in range(0, len(body), step):
        sock.sendall(body[start : start + step])
        time.sleep(0.4)
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert admin.campaign(campaign.id).counts[wire.RecordState.ready] == 3


def test_a_long_poll_is_not_cut_by_the_read_timeouts(live_server_factory) -> None:
    server: LiveServer = live_server_factory(header_timeout=1, body_timeout=1)
    admin = server.client()
    agent = admin.register(wire.AgentRegister(name="lp", host="h", slots=1)).agent.id
    # Nothing to claim: the request waits its full 4 s, longer than either timeout.
    assert admin.claim(agent, 1, wait=4) == []
    campaign = admin.create_campaign("after")
    admin.submit(campaign.id, [wire.RecordSpec(key="k", command="true")])
    assert len(admin.claim(agent, 1, wait=4)) == 1


def test_over_the_connection_cap_requests_get_503_and_the_server_recovers(
    live_server_factory,
) -> None:
    cap = 16
    server: LiveServer = live_server_factory(max_connections=cap)
    held = [connect(server.port) for _ in range(cap)]  # open, not a byte sent

    def health() -> int:
        with httpx.Client(timeout=30) as client:  # a fresh connection each time
            return client.get(server.url + "/healthz").status_code

    assert _eventually(health, 503), "no 503 with the cap reached"
    for sock in held:
        sock.close()
    assert _eventually(health, 200), "the server did not recover"


def _eventually(probe, wanted: int, attempts: int = 100) -> bool:
    """Probe until it answers `wanted` (the server registers connections asynchronously)."""
    for _ in range(attempts):
        if probe() == wanted:
            return True
        time.sleep(0.1)
    return False
