"""The overview's agents at a glance: slots busy in each bucket of the last hour, from
runs whose times are written into their rows, and each agent's newest error (both
backends, ids apart)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from farmhand.server.tables import RUN, utcnow
from farmhand.server.views import glance
from tests.server.helpers import API, agent, campaign, claim, submit


def minutes(now: datetime, m: float | None) -> datetime | None:
    return None if m is None else now + timedelta(minutes=m)


def farm(api: TestClient, now: datetime) -> tuple[int, int, dict[str, dict]]:
    """Agent `busy` ran one record from -50 to -40 min, runs another since -45 min, and
    failed a third from -8 to -5 min; agent `idle` ran nothing."""
    c = campaign(api, max_attempts=1)
    submit(api, c, "one", "two", "three")
    busy, idle = agent(api, "busy"), agent(api, "idle")
    # By run id: the window test below reads the newest two.
    first, second, third = sorted(claim(api, busy, 3), key=lambda lease: lease["run_id"])
    ok = api.post(f"{API}/runs/{first['run_id']}/complete", json={"token": first["token"]})
    body = {"token": third["token"], "error": "exit code 2", "exit_code": 2}
    bad = api.post(f"{API}/runs/{third['run_id']}/fail", json=body)
    assert ok.status_code == bad.status_code == 200
    times = {first["run_id"]: (-50, -40), second["run_id"]: (-45, None), third["run_id"]: (-8, -5)}
    with api.app.state.db.write() as session:
        for run_id, (start, end) in times.items():
            began = minutes(now, start)
            values = {"claimed_at": began, "started_at": began, "ended_at": minutes(now, end)}
            session.execute(update(RUN).where(RUN.c.id == run_id).values(**values))
    return busy, idle, {"first": first, "second": second, "third": third}


def test_busy_slots_per_bucket_and_the_newest_error(api: TestClient) -> None:
    now = utcnow()
    busy, idle, leases = farm(api, now)
    with api.app.state.db.read() as session:
        looks = glance.of_agents(session, [busy, idle], now=now)
    # Bucket i is [now - 60 min + 3 i min, + 3 min): the first run covers 2 min of bucket
    # 3, all of 4 and 5, 2 min of 6; the second 5 on; the failed one 2 min of 17, 1 of 18.
    third, two_thirds = 0.333, 0.667
    expected = [0.0] * 3 + [two_thirds, 1.0, 2.0, 1 + two_thirds] + [1.0] * 10
    expected += [1 + two_thirds, 1 + third, 1.0]
    assert looks[busy].busy == expected
    assert looks[idle].busy == [0.0] * 20 and looks[idle].error is None
    assert looks[busy].error == "exit code 2"
    assert looks[busy].error_record == leases["third"]["record_id"]
    assert looks[busy].error_at == minutes(now, -5)


def test_buckets_before_the_window_of_runs_are_unknown(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow()
    busy, _, _ = farm(api, now)
    monkeypatch.setattr(glance, "RUN_WINDOW", 2)  # the last two runs: not the first
    with api.app.state.db.read() as session:
        look = glance.of_agents(session, [busy], now=now)[busy]
    # The window's oldest claim is -45 min: the buckets that begin before it are unknown,
    # not idle.
    assert look.busy == [None] * 5 + [1.0] * 12 + [1.667, 1.333, 1.0]
