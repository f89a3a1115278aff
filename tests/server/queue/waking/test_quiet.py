"""While the queue watch knows the queue is quiet (nothing claimable, nothing falling due
before its next look, no wakeup since: `Wakeup.quiet`), long polls skip their claim
transactions (issue 16: 1,000 idle agents), yet an agent's refusal still answers at once and
a submitted record still reaches the next claim."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from farmhand.server.queue.waking.wakeups import Wakeup
from tests.server.helpers import API, agent, campaign, submit

INTERVAL = 1.0  # the watch's look; what it finds holds for two, plenty for a few requests


def test_quiet_holds_until_a_wakeup_or_its_time_runs_out() -> None:
    wakeup = Wakeup()
    assert not wakeup.quiet  # nobody looked yet
    seen = wakeup.generation
    wakeup.settle(seen, time.monotonic() + 60)
    assert wakeup.quiet
    wakeup.wake(0)  # any wakeup, even one that wakes nobody, may have made work
    assert not wakeup.quiet
    wakeup.settle(seen, time.monotonic() + 60)  # a look from before that wakeup: stale
    assert not wakeup.quiet
    wakeup.settle(wakeup.generation, time.monotonic() - 0.001)  # something fell due already
    assert not wakeup.quiet


@pytest.fixture
def quiet_server(
    make_api: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, list[int]]]:
    """The app with one claim long-polling (the watch looks only while claims wait), once
    the watch has found the queue quiet; and the list `run_write` appends to from then on.
    `api.poller_answer()` waits for that claim's answer."""
    api = make_api(claim_poll_interval=INTERVAL)
    wakeup, db = api.app.state.wakeup, api.app.state.db
    settled = threading.Event()
    settle = wakeup.settle

    def observed(generation: int, until: float) -> None:
        settle(generation, until)
        if wakeup.quiet:
            settled.set()

    monkeypatch.setattr(wakeup, "settle", observed)
    poller = agent(api, "poller")
    body = {"agent_id": poller, "max_records": 1, "wait": 4 * INTERVAL}
    polled: list[Any] = []
    thread = threading.Thread(target=lambda: polled.append(api.post(f"{API}/leases", json=body)))
    thread.start()
    assert settled.wait(30), "the queue watch never found the empty queue quiet"
    writes: list[int] = []
    run_write = db.run_write

    async def counted(work: Any, *, items: int = 1) -> Any:
        writes.append(items)
        return await run_write(work, items=items)

    monkeypatch.setattr(db, "run_write", counted)
    api.poller_answer = lambda: (thread.join(), polled[0])[1]  # type: ignore[attr-defined]
    yield api, writes
    thread.join()


def test_a_quiet_queue_costs_a_claim_no_write_transaction(
    quiet_server: tuple[TestClient, list[int]],
) -> None:
    api, writes = quiet_server
    idle = agent(api, "idle")
    r = api.post(f"{API}/leases", json={"agent_id": idle, "max_records": 4})
    assert r.status_code == 200 and r.json()["leases"] == []
    assert writes == []


def test_a_quiet_queue_still_refuses_a_stopped_or_unknown_agent_at_once(
    quiet_server: tuple[TestClient, list[int]],
) -> None:
    api, writes = quiet_server
    stopped = agent(api, "stopped")
    assert api.post(f"{API}/agents/{stopped}/stop").status_code == 200  # holds no lease
    assert api.app.state.wakeup.quiet  # stopping an agent without leases makes no work
    body = {"agent_id": stopped, "max_records": 1, "wait": 30}
    r = api.post(f"{API}/leases", json=body)
    assert r.status_code == 409 and "has stopped" in r.json()["detail"], r.text
    r = api.post(f"{API}/leases", json={**body, "agent_id": stopped + 1000})
    assert r.status_code == 404, r.text
    assert writes == []


def test_a_submit_ends_the_quiet_and_the_next_claim_takes_the_record(
    quiet_server: tuple[TestClient, list[int]],
) -> None:
    api, writes = quiet_server
    submit(api, campaign(api), "k1")
    assert not api.app.state.wakeup.quiet
    late = agent(api, "late")
    r = api.post(f"{API}/leases", json={"agent_id": late, "max_records": 1})
    assert r.status_code == 200 and writes, r.text  # an attempt, not a skip
    polled = api.poller_answer()  # type: ignore[attr-defined]
    assert polled.status_code == 200, polled.text
    # The poller, woken by the submit, may take it first: the record goes out exactly once.
    keys = [lease["key"] for answer in (r, polled) for lease in answer.json()["leases"]]
    assert keys == ["k1"]


def test_the_agent_check_reads_on_the_event_loop(
    quiet_server: tuple[TestClient, list[int]], backend: str
) -> None:
    """PostgreSQL's check goes through the app's `LoopReader`, not the thread pool; SQLite
    has none (its small reads run on the event loop already)."""
    api, _ = quiet_server
    reader = api.app.state.reader
    assert (reader is None) == (backend == "sqlite")
    if reader is None:
        return
    before = reader.reads
    idle = agent(api, "idle")
    r = api.post(f"{API}/leases", json={"agent_id": idle, "max_records": 1})
    assert r.status_code == 200 and r.json()["leases"] == []
    r = api.post(f"{API}/leases", json={"agent_id": idle + 1000, "max_records": 1})
    assert r.status_code == 404, r.text
    assert reader.reads == before + 2
