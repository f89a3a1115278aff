"""A real browser on a 300-record campaign run by a real agent, where records fail with three
causes: the campaign page groups them, a cause's own page lists its records, and "Retry these
N" re-queues exactly that cause's records. Screenshots of the overview, campaign, cause and
record pages are kept in artifacts/ (docs/pages.md shows them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import start_agent
from tests.e2e.integrations.test_browser import Watched, browser, keep

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, shared with test_browser.py

#: key prefix → (how many, command): three failure causes, each with what differs masked.
KINDS = {
    "ok": (270, "true"),
    "atoms": (15, 'echo "ERROR: lost atoms at step $((${#FARMHAND_RECORD_KEY} * 7))" >&2; exit 2'),
    "scf": (10, 'echo "SCF did not converge after 120 cycles in $PWD" >&2; exit 3'),
    "oom": (5, 'echo "CUDA error: out of memory (tried 4096 MiB)" >&2; exit 1'),
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_failure_causes_retry_requeues_exactly_its_records(
    browser: Any, live_server: LiveServer, tmp_path: Path, backend: str
) -> None:
    client = live_server.client()
    work = client.create_campaign("relax", defaults={"max_attempts": 1})
    specs = [
        wire.RecordSpec(key=f"{kind}-{i:03d}", command=command)
        for kind, (n, command) in KINDS.items()
        for i in range(n)
    ]
    client.submit(work.id, specs)
    agent = start_agent(
        live_server, tmp_path, "w", "--campaign", str(work.id), "--slots", "8",
        "--exit-when-idle", "1",
    )  # fmt: skip
    assert agent.wait(timeout=300) == 0
    records = {r.key: r for r in client.records(campaign_id=work.id)}
    assert sum(r.state == wire.RecordState.failed for r in records.values()) == 30
    atoms = {r.id for key, r in records.items() if key.startswith("atoms-")}

    watched = Watched(browser.new_page(viewport={"width": 1280, "height": 900}))
    page = watched.page
    page.goto(f"{live_server.url}/")
    page.fill("#token", live_server.admin_token)
    page.click("form.login button[type=submit]")
    page.wait_for_selector(f"tr[data-campaign='{work.id}']")
    keep(page, tmp_path, f"failures-overview-{backend}.png")
    page.goto(f"{live_server.url}/campaigns/{work.id}")
    rows = page.eval_on_selector_all(
        "#failures tbody tr", "rows => rows.map(r => r.cells[0].textContent.trim())"
    )
    assert rows == ["15", "10", "5"]  # three causes, biggest first
    keep(page, tmp_path, f"failures-campaign-{backend}.png")
    page.click("#failures tbody tr >> nth=0 >> a.all-failed")
    page.wait_for_selector("#failed-records")
    listed = page.eval_on_selector_all(
        "#failed-records a", "links => links.map(a => a.getAttribute('href'))"
    )
    assert sorted(int(href.rsplit("/", 1)[1]) for href in listed) == sorted(atoms)
    keep(page, tmp_path, f"failures-cause-{backend}.png")
    page.click(f"#failed-records a >> text={records['atoms-003'].key}")
    page.wait_for_selector("h1:has-text('atoms-003')")
    assert "lost atoms at step" in page.inner_text("body")
    keep(page, tmp_path, f"failures-record-{backend}.png")

    page.goto(f"{live_server.url}/campaigns/{work.id}")
    page.click("#failures tbody tr >> nth=0 >> button.retry-group")
    page.wait_for_selector(".notice:has-text('re-queued 15 record')")
    after = {r.id: r.state for r in client.records(campaign_id=work.id)}
    assert {rid for rid, state in after.items() if state == wire.RecordState.ready} == atoms
    failed = {rid for rid, state in after.items() if state == wire.RecordState.failed}
    assert failed == {r.id for key, r in records.items() if key[:3] in ("scf", "oom")}
    assert sum(state == wire.RecordState.done for state in after.values()) == 270
    assert watched.problems == []
