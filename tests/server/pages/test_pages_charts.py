"""The plots on the campaign page and the overview, and the agents at a glance: drawn on
the server as SVG whose numbers match the API's (both backends, ids apart)."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from farmhand.server.tables import RUN, utcnow
from tests.server.helpers import API, agent, claim, submit
from tests.server.pages.test_pages import LIVE, browser, fail
from tests.server.views.test_charts import world


def attrs(html: str, tag: str, cls: str) -> list[dict[str, str]]:
    found = re.findall(rf'<{tag} class="{cls}"([^>]*)>', html)
    return [dict(re.findall(r'data-(\w+)="([^"]*)"', a)) for a in found]


def test_the_campaign_page_plots_what_the_api_counts(api: TestClient) -> None:
    c, ids = world(api)
    html = browser(api).get(f"/campaigns/{c}", headers=LIVE).text  # the live region has them
    line = api.get(f"{API}/campaigns/{c}/timeline").json()
    buckets = attrs(html, "rect", "bucket")
    ended_plot, rate_plot = buckets[:120], buckets[120:]
    assert [int(b["ended"]) for b in ended_plot] == [p["ended"] for p in line["points"]]
    assert (ended_plot[-1]["done"], ended_plot[-1]["failed"]) == ("3", "1")
    assert 'id="plot-ended"' in html and 'data-done="3" data-failed="1"' in html
    assert len(rate_plot) == 120
    bins = attrs(html, "rect", "bin")
    assert sum(int(b["count"]) for b in bins) == 4
    slowest = re.search(r'<figcaption id="slowest">(.*?)</figcaption>', html, re.S)
    assert slowest and re.findall(r'href="/records/(\d+)"', slowest.group(1))[:2] == [
        str(ids["d"]),
        str(ids["c"]),
    ]
    assert "style=" not in html and "<script" not in html


def test_a_campaign_with_nothing_ended_says_so(api: TestClient) -> None:
    r = api.post(f"{API}/campaigns", json={"name": "new"})
    submit(api, r.json()["id"], "a")
    html = browser(api).get(f"/campaigns/{r.json()['id']}").text
    assert 'id="plots-empty"' in html and 'id="plot-ended"' not in html


def test_the_overview_draws_a_timeline_per_campaign_and_agents_at_a_glance(
    api: TestClient,
) -> None:
    c, _ = world(api)
    worker = agent(api, "node9")
    submit(api, c, "late-1", "late-2")
    first, second = claim(api, worker, 2)
    fail(api, first, "Traceback:\nValueError: bad cell\n")
    now = utcnow()
    with api.app.state.db.write() as session:  # busy for the last half hour on one slot
        session.execute(
            update(RUN)
            .where(RUN.c.id == second["run_id"])
            .values(claimed_at=now - timedelta(minutes=30), started_at=now - timedelta(minutes=30))
        )
    body = {"status": {"paused": "disk 97% full (limit 95%)"}}
    assert api.post(f"{API}/agents/{worker}/heartbeat", json=body).status_code == 200
    html = browser(api).get("/").text
    row = re.search(rf'<tr data-campaign="{c}">(.*?)</tr>', html, re.S)
    assert row and 'class="spark"' in row.group(1)
    assert 'data-done="3" data-failed="2"' in row.group(1)  # the late failure counts too
    agents = re.search(rf'<tr data-agent="{worker}">(.*?)</tr>', html, re.S)
    assert agents, html
    cells = agents.group(1)
    busy = dict(re.findall(r'data-(\w+)="([^"]*)"', cells.split('class="spark busy"')[1]))
    assert float(busy["now"]) == 1.0 and float(busy["peak"]) == 1.0
    assert "disk 97% full (limit 95%)" in cells and 'class="flag paused"' in cells
    assert "exit code 2" in cells and f'href="/records/{first["record_id"]}"' in cells
