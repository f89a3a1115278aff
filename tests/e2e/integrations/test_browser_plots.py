"""A real browser on a real server with a real agent: the campaign page's plots and the
overview's small ones fill in while the campaign runs (the pages' own refresh, no reload),
their numbers match the API's, and nothing is loaded from anywhere but the server.

Screenshots go to `artifacts/` like tests/e2e/integrations/test_browser.py's.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import start_agent
from tests.e2e.integrations.test_browser import WAIT_MS, Watched, browser, keep

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, imported for this module's tests

ATTRS = "(el) => Object.fromEntries(Object.entries(el.dataset))"


def test_plots_fill_in_and_match_the_api(
    browser: Any, live_server_factory: Any, tmp_path: Path, backend: str
) -> None:
    server: LiveServer = live_server_factory(page_refresh=0.3)
    client = server.client()
    work = client.create_campaign("plotted")
    gate = tmp_path / "gate"
    held = f"while [ ! -e {gate} ]; do sleep 0.05; done; sleep 0.3; echo held"
    client.submit(
        work.id,
        [wire.RecordSpec(key=f"quick-{i}", command="echo quick", priority=10) for i in range(5)]
        + [wire.RecordSpec(key=f"held-{i}", command=held) for i in range(2)]
        + [
            wire.RecordSpec(
                key="broken",
                command="sleep 0.2; echo 'ValueError: bad cell' >&2; exit 3",
                priority=10,
                run_args={"max_attempts": 1},
            )
        ],
    )
    watched = Watched(browser.new_page(viewport={"width": 1280, "height": 900}))
    page = watched.page
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    page.goto(server.url + "/")
    page.fill("#token", server.admin_token)
    page.click("form.login button[type=submit]")
    page.wait_for_selector(f"tr[data-campaign='{work.id}']")
    page.goto(f"{server.url}/campaigns/{work.id}")
    assert page.query_selector("#plots-empty") is not None  # nothing ended yet
    page.evaluate("window.notReloaded = true")

    agent = start_agent(server, tmp_path, "plots", "--campaign", str(work.id), "--slots", "4")
    try:
        # The quick ones and the broken one end while the held ones wait: the plot appears
        # by itself, then grows to the end once the gate opens.
        page.wait_for_selector(
            "#plot-ended[data-done='5'][data-failed='1']", timeout=WAIT_MS, state="attached"
        )
        gate.touch()
        page.wait_for_selector(
            "#plot-ended[data-done='7'][data-failed='1']", timeout=WAIT_MS, state="attached"
        )
        assert page.evaluate("window.notReloaded") is True
        page.wait_for_selector("#plot-runtimes[data-runs='8']", timeout=WAIT_MS, state="attached")
        keep(page, tmp_path, f"campaign-plots-{backend}.png")

        api = {"Authorization": f"Bearer {server.admin_token}"}
        base = f"{server.url}{wire.API_PREFIX}/campaigns/{work.id}"
        line = httpx.get(f"{base}/timeline", headers=api).json()
        times = httpx.get(f"{base}/runtimes", headers=api).json()
        counts = client.campaign(work.id).counts
        drawn = page.eval_on_selector_all("#plot-ended rect.bucket", f"els => els.map({ATTRS})")
        assert len(drawn) == len(line["points"])
        assert [int(b["ended"]) for b in drawn] == [p["ended"] for p in line["points"]]
        last = line["points"][-1]
        assert (last["done"], last["failed"]) == (7, 1)
        assert (counts[wire.RecordState.done], counts[wire.RecordState.failed]) == (7, 1)
        assert (int(drawn[-1]["done"]), int(drawn[-1]["failed"])) == (7, 1)
        rates = page.eval_on_selector_all("#plot-throughput rect.bucket", "els => els.length")
        assert rates == len(line["points"])
        bins = page.eval_on_selector_all("#plot-runtimes rect.bin", f"els => els.map({ATTRS})")
        assert [int(b["count"]) for b in bins] == [b["count"] for b in times["bins"]]
        assert sum(int(b["count"]) for b in bins) == times["runs"] == 8  # every ended run
        slowest = page.eval_on_selector_all("#slowest a", "els => els.map(e => e.textContent)")
        assert slowest[:2] == ["held-0", "held-1"] or slowest[:2] == ["held-1", "held-0"]

        page.click("header a:text-is('Overview')")
        spark = f"tr[data-campaign='{work.id}'] svg.spark[data-done='7'][data-failed='1']"
        page.wait_for_selector(spark, timeout=WAIT_MS, state="attached")
        page.wait_for_selector("tr[data-agent] svg.spark.busy", timeout=WAIT_MS, state="attached")
        assert "bad cell" in page.inner_text("tr[data-agent] td.last-error") or "exit code 3" in (
            page.inner_text("tr[data-agent] td.last-error")
        )
        keep(page, tmp_path, f"overview-plots-{backend}.png")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)

    page.click(f"tr[data-campaign='{work.id}'] a:text-is('plotted')")
    page.click("#slowest a >> nth=0")
    page.wait_for_selector("h1:has-text('held-')")
    assert watched.problems == []
    assert outside == []
