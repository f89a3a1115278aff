"""A real server refuses a body before reading it: no token → 401 with the body unread; a body
over the cap → 413 as soon as it passes, chunked or not. The server's memory shows it."""

from __future__ import annotations

import json

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.rawhttp import MIB, chunks, peak_rss, send_chunked

API = wire.API_PREFIX


def test_a_chunked_200_mib_body_without_a_token_is_401_unread(
    live_server_process: LiveServer,
) -> None:
    live_server = live_server_process  # its peak RSS is the server's alone
    assert live_server.process is not None
    admin = live_server.client()
    campaign = admin.create_campaign("unread")
    before = peak_rss(live_server.process.pid)
    first = json.dumps({"campaign_id": campaign.id, "records": [{"key": "k", "command": "true"}]})
    body = chunks(200 * MIB, first=first.encode())
    headers = {"Content-Type": "application/json"}
    status, answer, sent = send_chunked(live_server.port, "POST", f"{API}/records", body, headers)
    assert status == 401, answer[:300]
    assert b'"code":"unauthorized"' in answer
    grown = peak_rss(live_server.process.pid) - before
    assert grown < 32 * MIB, f"the server grew by {grown / MIB:.0f} MiB"
    assert sent < 64 * MIB  # it hung up: the client stopped long before 200 MiB
    assert admin.campaign(campaign.id).counts.get(wire.RecordState.ready, 0) == 0
    # A normal request still works, on a new connection.
    admin.submit(campaign.id, [wire.RecordSpec(key="ok", command="true")])
    assert admin.campaign(campaign.id).counts[wire.RecordState.ready] == 1


def test_a_chunked_body_over_the_cap_with_a_token_is_413_and_creates_nothing(
    live_server_factory,
) -> None:
    server: LiveServer = live_server_factory(max_body_bytes=MIB)
    admin = server.client()
    campaign = admin.create_campaign("capped")
    records = [{"key": f"k{i}", "command": "true"} for i in range(3)]
    first = json.dumps({"campaign_id": campaign.id, "records": records}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.admin_token}"}
    body = chunks(64 * MIB, first=first)
    status, answer, sent = send_chunked(server.port, "POST", f"{API}/records", body, headers)
    assert status == 413, answer[:300]
    assert b'"code":"too_large"' in answer
    assert sent < 32 * MIB
    assert admin.campaign(campaign.id).counts.get(wire.RecordState.ready, 0) == 0
    # The same body under the cap, chunked too, is read and stored.
    small = chunks(MIB // 2, first=first)
    status, answer, _ = send_chunked(server.port, "POST", f"{API}/records", small, headers)
    assert status == 201, answer[:300]
    assert admin.campaign(campaign.id).counts[wire.RecordState.ready] == 3
