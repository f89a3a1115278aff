"""A real browser on a real server with a real agent: headless Chromium logs in, watches a
campaign's counts move without reloading, reads a failed record's stderr tail, cancels a
record, and opens the offline API docs — with no console error anywhere.

Screenshots are kept in the test's tmp dir and copied to `artifacts/` in the repository.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import start_agent
from tests.support.browsers import CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"
WAIT_MS = 60_000


class Watched:
    """A browser page whose console errors, uncaught exceptions and failed requests are kept."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        # A click that navigates away aborts the page's in-flight refresh: the browser's
        # doing, not a failure of the page or the server.
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"failed: {request.url} ({request.failure})")

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console error on {self.page.url}: {message.text}")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium from the system, driven by playwright."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def count(page: Any, campaign_id: int, state: str) -> int:
    """A state's count in the campaign's row of the overview (0 when the state is absent)."""
    text = page.evaluate(
        "([c, s]) => document.querySelector("
        "`tr[data-campaign='${c}'] .count[data-state='${s}']`)?.textContent ?? '0'",
        [campaign_id, state],
    )
    return int(text.replace(",", ""))


def wait_for_count(page: Any, campaign_id: int, state: str, expected: int) -> None:
    """Wait (without reloading) until the overview shows `expected` records in `state`."""
    page.wait_for_function(
        "([c, s, n]) => (document.querySelector("
        "`tr[data-campaign='${c}'] .count[data-state='${s}']`)?.textContent ?? '0')"
        ".replace(/,/g, '') === String(n)",
        arg=[campaign_id, state, expected],
        timeout=WAIT_MS,
    )


def keep(page: Any, tmp_path: Path, name: str) -> Path:
    """Screenshot into the test's tmp dir, copied to artifacts/ for people to look at."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


def test_a_browser_watches_progress_reads_a_failure_and_cancels(
    browser: Any, live_server_factory: Any, tmp_path: Path, backend: str
) -> None:
    server: LiveServer = live_server_factory(page_refresh=0.3)
    client = server.client()
    gate = tmp_path / "gate"
    work = client.create_campaign("squares")
    held = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo held"
    client.submit(
        work.id,
        [wire.RecordSpec(key=f"quick-{i}", command="echo quick", priority=10) for i in range(4)]
        + [wire.RecordSpec(key=f"held-{i}", command=held) for i in range(4)]
        + [
            wire.RecordSpec(
                key="broken",
                command="echo 'ValueError: negative volume' >&2; exit 3",
                priority=10,
                run_args={"max_attempts": 1},
            )
        ],
    )
    parked = client.create_campaign("parked")  # the agent does not serve it
    client.submit(parked.id, [wire.RecordSpec(key="to-cancel", command="echo never")])

    watched = Watched(browser.new_page(viewport={"width": 1280, "height": 900}))
    page = watched.page
    page.goto(server.url + "/")
    assert "/login" in page.url  # no session yet
    page.fill("#token", server.admin_token)
    page.click("form.login button[type=submit]")
    page.wait_for_selector(f"tr[data-campaign='{work.id}']")
    assert count(page, work.id, "ready") == 9 and count(page, work.id, "done") == 0
    page.evaluate("window.notReloaded = true")

    agent = start_agent(server, tmp_path, "browser", "--campaign", str(work.id), "--slots", "4")
    try:
        # The quick records finish and the broken one fails while the held ones wait: the
        # page shows that middle state by itself, then the end once the gate opens.
        wait_for_count(page, work.id, "done", 4)
        wait_for_count(page, work.id, "failed", 1)
        page.wait_for_selector("tr[data-agent] td[data-running]:text-is('4')", timeout=WAIT_MS)
        keep(page, tmp_path, f"overview-running-{backend}.png")
        gate.touch()
        wait_for_count(page, work.id, "done", 8)
        assert page.evaluate("window.notReloaded") is True  # refreshed in place
        assert "100.0%" in page.inner_text(f"tr[data-campaign='{work.id}']")
        keep(page, tmp_path, f"overview-{backend}.png")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)

    page.click("#failures a:text-is('broken')")
    page.wait_for_selector("h1:has-text('broken')")
    stderr = page.inner_text("#runs pre.stderr")
    assert stderr.strip() == "ValueError: negative volume"
    assert "exit code 3" in page.inner_text("#runs")
    keep(page, tmp_path, f"failed-record-{backend}.png")

    page.click("header a:text-is('Overview')")
    page.click(f"tr[data-campaign='{parked.id}'] a:text-is('parked')")
    page.click("#records a:text-is('to-cancel')")
    page.click("#cancel")
    page.wait_for_selector("text=Record cancelled.")
    assert page.inner_text("h1 .state") == "cancelled"
    (record,) = client.records(campaign_id=parked.id)
    assert record.state == wire.RecordState.cancelled

    page.goto(server.url + "/docs")  # Swagger UI from the package renders the OpenAPI 3.1
    page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/records']", timeout=WAIT_MS)
    page.goto(server.url + "/redoc")
    page.wait_for_selector("h1:has-text('farmhand')", timeout=WAIT_MS)
    assert watched.problems == []
