"""Every route that makes records claimable wakes the claims long-polling for them.

Each test starts a claim that long-polls for WAIT seconds on a server whose re-check interval
is longer still, waits until that claim has found nothing and gone to sleep on the wakeup, then
does the one thing under test. Without that route's `wakeup.notify()` the claim sleeps until
its wait runs out and takes the record in its last attempt (WAIT seconds); with it, the claim
returns within PROMPT seconds. Each test's docstring names the mutation it catches: turn that
one `notify()` call into a no-op and the test fails.

(Cancelling makes nothing claimable, so it wakes nobody; the cross-replica relay is
tests/e2e/server/test_replicas.py.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from farmhand import wire
from tests.server.helpers import API, agent, campaign, claim, record, submit
from tests.server.pages.test_pages import browser, csrf_of

WAIT = wire.MAX_WAIT_SECONDS  # the longest wait a claim may ask for (60 s)
PROMPT = 20.0  # far from WAIT: only a wakeup returns a sleeping claim this soon
NEVER = 3600.0  # the server's re-check interval: polling cannot rescue a claim


@pytest.fixture
def server(make_api: Callable[..., TestClient]) -> TestClient:
    """The app in-process, re-checking sleeping claims only every hour."""
    return make_api(claim_poll_interval=NEVER)


class SleepingClaim:
    """A claim long-polling (in a thread) that has found nothing and sleeps on the wakeup."""

    def __init__(self, api: TestClient, agent_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.leases: list[dict[str, Any]] = []
        self.api = api
        asleep = threading.Event()
        self.wakeup = wakeup = api.app.state.wakeup
        wait = wakeup.wait

        async def observed(timeout: float, *, since: int | None = None) -> bool:
            # Only a wait that will block counts: one that returns at once for a wakeup
            # the claim's attempt raced is followed by another attempt.
            if since is None or since == wakeup.generation:
                asleep.set()
            return await wait(timeout, since=since)

        monkeypatch.setattr(wakeup, "wait", observed)

        def long_poll() -> None:
            body = {"agent_id": agent_id, "max_records": 1, "wait": WAIT}
            r = api.post(f"{API}/leases", json=body)
            assert r.status_code == 200, r.text
            self.leases = r.json()["leases"]

        self.thread = threading.Thread(target=long_poll, daemon=True)
        self.thread.start()
        assert asleep.wait(PROMPT), "the claim never went to sleep"
        assert self.thread.is_alive() and not self.leases

    def woken_with(self) -> list[str]:
        """Keys it leased once woken; fails when it sleeps on for PROMPT seconds."""
        self.thread.join(PROMPT)
        if self.thread.is_alive():
            # Wake it from here, so the test fails now rather than when the wait runs out
            # (and the app is not shut down under a request still in flight).
            self.api.portal.call(self.wakeup.wake)
            self.thread.join(PROMPT)
            pytest.fail(f"no wakeup: the claim slept on for {PROMPT} s")
        return [lease["key"] for lease in self.leases]


def fail(api: TestClient, lease: dict[str, Any]) -> dict[str, Any]:
    r = api.post(f"{API}/runs/{lease['run_id']}/fail", json={"token": lease["token"], "error": "x"})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_submission_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: routes/records.py `create_records` without `wakeup.notify()`."""
    c = campaign(server)
    sleeper = SleepingClaim(server, agent(server), monkeypatch)
    submit(server, c, "k")
    assert sleeper.woken_with() == ["k"]


def test_a_retry_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: routes/records.py `retry_records` without `wakeup.notify()`."""
    c = campaign(server, max_attempts=1)
    submit(server, c, "k")
    (lease,) = claim(server, agent(server, "first"))
    assert fail(server, lease)["record_state"] == "failed"
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    r = server.post(f"{API}/records/retry", json={"ids": [lease["record_id"]]})
    assert r.status_code == 200 and r.json()["changed"] == [lease["record_id"]], r.text
    assert sleeper.woken_with() == ["k"]


def test_the_retry_button_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: pages/routes.py `retry` without `wakeup.notify()`."""
    c = campaign(server, max_attempts=1)
    submit(server, c, "k")
    (lease,) = claim(server, agent(server, "first"))
    fail(server, lease)
    page = browser(server)
    form = page.get(f"/records/{lease['record_id']}").text
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    r = page.post(f"/records/{lease['record_id']}/retry", data={"csrf": csrf_of(form)})
    assert r.status_code == 303, r.text
    assert sleeper.woken_with() == ["k"]


def test_the_bulk_retry_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: pages/bulk.py `confirm` without `wakeup.notify()`."""
    c = campaign(server, max_attempts=1)
    submit(server, c, "k")
    (lease,) = claim(server, agent(server, "first"))
    fail(server, lease)
    page = browser(server)
    csrf = csrf_of(page.get(f"/campaigns/{c}").text)
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    form = {"csrf": csrf, "action": "retry", "state": "failed", "through": str(lease["record_id"])}
    r = page.post(f"/campaigns/{c}/bulk/confirm", data={**form, "expected": "1"})
    assert r.status_code == 303, r.text
    assert sleeper.woken_with() == ["k"]


def test_a_failed_attempt_that_requeues_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: routes/runs.py `fail_run` without `wakeup.notify()`."""
    c = campaign(server, max_attempts=2, retry_delay=0)  # claimable at once
    submit(server, c, "k")
    (lease,) = claim(server, agent(server, "first"))
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    assert fail(server, lease)["record_state"] == "ready"
    assert sleeper.woken_with() == ["k"]


def test_a_completed_parent_wakes_a_claim_for_its_child(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: routes/runs.py `complete_run` without `wakeup.notify()`."""
    c = campaign(server)
    child = {"key": "child", "command": "true", "parents": ["parent"]}
    records = [{"key": "parent", "command": "true"}, child]
    r = server.post(f"{API}/records", json={"campaign_id": c, "records": records})
    assert r.status_code == 201, r.text
    (lease,) = claim(server, agent(server, "first"))
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    r = server.post(f"{API}/runs/{lease['run_id']}/complete", json={"token": lease["token"]})
    assert r.status_code == 200, r.text
    assert sleeper.woken_with() == ["child"]


@pytest.mark.parametrize("outcome", ["requeued", "unblocks a child"])
def test_a_batch_report_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """Mutation: routes/runs.py `report_runs` without `wakeup.notify()` (both reasons it
    has: a failed attempt re-queued, a completed parent whose child became ready)."""
    c = campaign(server, max_attempts=2, retry_delay=0)  # claimable at once
    records = [{"key": "parent", "command": "true"}]
    records += [{"key": "child", "command": "true", "parents": ["parent"]}]
    r = server.post(f"{API}/records", json={"campaign_id": c, "records": records})
    assert r.status_code == 201, r.text
    (lease,) = claim(server, agent(server, "first"))
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    report: dict[str, Any] = {"run_id": lease["run_id"], "token": lease["token"]}
    if outcome == "requeued":
        report.update(error="exit code 1", exit_code=1)
    r = server.post(f"{API}/runs/reports", json={"reports": [report]})
    assert r.status_code == 200, r.text
    assert sleeper.woken_with() == (["parent"] if outcome == "requeued" else ["child"])


def test_a_release_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: routes/runs.py `release_run` without `wakeup.notify()`."""
    submit(server, campaign(server), "k")
    (lease,) = claim(server, agent(server, "first"))
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    r = server.post(f"{API}/runs/{lease['run_id']}/release", json={"token": lease["token"]})
    assert r.status_code == 200, r.text
    assert sleeper.woken_with() == ["k"]


def test_stopping_an_agent_wakes_a_claim_for_its_records(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: routes/agents.py `stop_agent` without `wakeup.notify()`."""
    submit(server, campaign(server), "k")
    first = agent(server, "first")
    claim(server, first)
    sleeper = SleepingClaim(server, agent(server, "second"), monkeypatch)
    r = server.post(f"{API}/agents/{first}/stop")
    assert r.status_code == 200, r.text
    assert sleeper.woken_with() == ["k"]


def test_a_bundle_import_wakes_a_sleeping_claim(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: routes/bundles.py `import_bundle` without `wakeup.notify()`."""
    now = datetime.now(timezone.utc)
    bundle = wire.BundleImport(
        campaign=wire.BundleCampaign(name="imported", version=1, created_at=now),
        records=[
            wire.BundleRecord(
                key="k", command="true", state="ready", attempts=0, max_attempts=1, created_at=now
            )
        ],
    )
    sleeper = SleepingClaim(server, agent(server), monkeypatch)
    r = server.post(f"{API}/bundles", json=bundle.model_dump(mode="json"))
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    assert sleeper.woken_with() == ["k"]


def test_the_lease_sweep_wakes_a_claim_for_the_records_it_requeues(
    make_api: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: app.py `_sweep` without `app.state.wakeup.notify()`."""
    ttl = 3.0
    api = make_api(claim_poll_interval=NEVER, lease_ttl=ttl, sweep_interval=0.2)
    submit(api, campaign(api), "k")
    (lease,) = claim(api, agent(api, "lost"))  # never renewed: the sweep expires it
    sleeper = SleepingClaim(api, agent(api, "second"), monkeypatch)
    assert sleeper.woken_with() == ["k"]  # the lease ran out ttl s after the claim
    assert record(api, lease["record_id"])["attempts"] == 2  # the lost attempt, and this one
