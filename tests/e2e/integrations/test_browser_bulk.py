"""A real browser acts on many records from the campaign page: it filters, asks to cancel
(or retry) what the filter shows, reads the server's count on the confirmation page,
confirms, and the server changed exactly those records — with no script needed for the
confirmation, under the pages' strict CSP, and no console error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.integrations.test_browser import WAIT_MS, Watched, browser, keep

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, shared with test_browser.py


def states(client: Any, campaign_id: int) -> dict[str, str]:
    return {r.key: r.state.value for r in client.records(campaign_id=campaign_id)}


def test_a_browser_cancels_then_retries_what_a_filter_shows(
    browser: Any, live_server_factory: Any, tmp_path: Path, backend: str
) -> None:
    server: LiveServer = live_server_factory(page_refresh=0.3)
    client = server.client()
    other = client.create_campaign("neighbour")  # same keys and tags: must stay untouched
    work = client.create_campaign("sweep")
    specs = [
        wire.RecordSpec(
            key=f"{kind}-{i:02d}",
            command="true",
            params={"T": 300 + 100 * (i % 4)},
            tags=["hot"] if i % 2 else ["cold"],
        )
        for kind in ("relax", "phonon")
        for i in range(12)
    ]
    client.submit(work.id, specs)
    client.submit(other.id, specs[:6])
    before = states(client, work.id)

    watched = Watched(browser.new_page(viewport={"width": 1280, "height": 900}))
    page = watched.page
    page.goto(f"{server.url}/campaigns/{work.id}")
    page.fill("#token", server.admin_token)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("#records")
    # The filter, typed into the form: hot relax records with T >= 400.
    page.fill("form.filters input[name=tag]", "hot")
    page.fill("form.filters input[name=key]", "relax-")
    page.fill("form.filters input[name=where] >> nth=0", "T>=400")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**tag=hot**")
    shown = page.eval_on_selector_all("#records tbody a", "links => links.map(a => a.textContent)")
    expected = [f"relax-{i:02d}" for i in range(12) if i % 2 and 300 + 100 * (i % 4) >= 400]
    assert shown == expected and len(expected) == 6
    temperatures = page.eval_on_selector_all(
        "#records tbody td.param", "tds => tds.map(td => td.textContent)"
    )
    assert page.inner_text("#records th.param") == "T" and set(temperatures) == {"400", "600"}
    keep(page, tmp_path, f"bulk-filtered-{backend}.png")

    page.click("#bulk-cancel")
    page.wait_for_selector("#ask")
    assert page.inner_text("#ask") == "Cancel 6 records shown by this filter?"
    assert "6 will be cancelled" in page.inner_text("#plan")
    keep(page, tmp_path, f"bulk-cancel-confirm-{backend}.png")
    assert states(client, work.id) == before  # asking changed nothing
    page.click("#confirm")
    page.wait_for_selector("#did", timeout=WAIT_MS)
    assert page.inner_text("#did") == "Cancelled 6 records."
    after = states(client, work.id)
    assert {k for k in after if after[k] != before[k]} == set(expected)
    assert all(after[k] == "cancelled" for k in expected)
    assert set(states(client, other.id).values()) == {"ready"}

    # Retry: the cancelled ones whose key starts with relax-0 (five of them), by a link.
    page.goto(f"{server.url}/campaigns/{work.id}?state=cancelled&key=relax-0")
    page.click("#bulk-retry")
    page.wait_for_selector("#ask")
    assert page.inner_text("#ask") == "Retry 5 records shown by this filter?"
    assert "5 will be re-queued" in page.inner_text("#plan")
    page.click("#confirm")
    page.wait_for_selector("#did", timeout=WAIT_MS)
    assert page.inner_text("#did") == "Re-queued 5 records."
    again = states(client, work.id)
    retried = {f"relax-0{i}" for i in (1, 3, 5, 7, 9)}
    assert {k for k in again if again[k] != after[k]} == retried
    assert all(again[k] == "ready" for k in retried)
    keep(page, tmp_path, f"bulk-retried-{backend}.png")
    assert watched.problems == []
