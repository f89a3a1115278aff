"""Honest numbers on the pages: one throughput unit per page, an ETA that names the rate it
assumes, params and chosen result fields as columns of the record list, and a CSV of exactly
what the campaign page's filter shows (both databases)."""

from __future__ import annotations

import csv
import io
import re
from html import unescape

import pytest
from fastapi.testclient import TestClient

from farmhand.server.pages.render import duration, rate
from farmhand.server.views import status
from tests.server.helpers import API, agent, campaign
from tests.server.pages.test_pages import LIVE, browser


def test_rates_read_in_the_unit_asked_and_durations_in_two_units() -> None:
    assert rate(2.5, "s") == "2.5/s" and rate(2.5, "min") == "150/min"
    assert rate(0.01, "s") == "0.01/s"  # a slow row beside a fast one keeps its digits
    assert rate(1 / 60, "min") == "1.0/min" and rate(1 / 7200, "h") == "0.5/h"
    assert rate(1234.0, "s") == "1,234/s" and rate(0.0, "min") == "0.0/min"
    assert rate(None, "s") == "\u2013" and rate(0.5) == "30.0/min"  # no unit: per value
    assert status.rate_unit([2.0, 0.001, None]) == "s"
    assert status.rate_unit([0.5, 0.02]) == "min"
    assert status.rate_unit([1 / 600, None]) == "h" and status.rate_unit([]) == "h"
    assert [duration(s) for s in (0, 45, 60, 125, 7800, 7200, 86400 + 4 * 3600, 3 * 86400)] == [
        "0s", "45s", "1m", "2m", "2h 10m", "2h", "1d 4h", "3d",
    ]  # fmt: skip


def test_the_eta_names_the_rate_it_assumes() -> None:
    item = status.Progress(campaign=None, total=10, remaining=5, segments=[])  # type: ignore[arg-type]
    item.rate_basis = "last 15 min"
    assert item.eta_basis == "the last 15 min's rate"
    item.rate_basis = "since start"
    assert item.eta_basis == "the rate since start"


class FrozenClock(status.Throughput):
    """A throughput meter that reads the page at a fixed moment."""

    NOW = 10_000.0

    def observe(self, worked: dict[int, int], now: float | None = None) -> None:
        super().observe(worked, now=self.NOW)

    def rate(self, campaign_id: int, worked: int, now: float | None = None) -> tuple[float, float]:
        return super().rate(campaign_id, worked, now=self.NOW)


def text_of(found: re.Match[str] | None) -> str:
    """A matched piece of HTML as text, spaces collapsed."""
    assert found
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1)))


def finish(api: TestClient, campaign_id: int, n: int, result: dict | None = None) -> None:
    """Claim and complete `n` of the campaign's ready records."""
    body = {"agent_id": agent(api), "max_records": n, "campaign_id": campaign_id}
    for lease in api.post(f"{API}/leases", json=body).json()["leases"]:
        done = {"token": lease["token"], "result": result or {}}
        assert api.post(f"{API}/runs/{lease['run_id']}/complete", json=done).status_code == 200


def test_the_overview_shows_every_rate_in_one_unit_and_the_eta_with_its_window(
    api: TestClient,
) -> None:
    fast, slow = campaign(api, "fast"), campaign(api, "slow")
    for c, n in ((fast, 8), (slow, 3)):
        records = [{"key": f"k{i}", "command": "x"} for i in range(n)]
        assert (
            api.post(f"{API}/records", json={"campaign_id": c, "records": records}).status_code
            == 201
        )
    # Counts as this server process saw them two minutes before the page is read (a clock
    # of its own: the rate must not depend on how long the test takes).
    meter = FrozenClock()
    status.Throughput.observe(meter, {fast: 0, slow: 0}, now=FrozenClock.NOW - 120)
    api.app.state.throughput = meter
    finish(api, fast, 6)  # 6 in 120 s: 3/min
    finish(api, slow, 1)  # 1 in 120 s: 0.5/min
    html = unescape(browser(api).get("/", headers=LIVE).text)
    rows = {
        c: text_of(re.search(rf'<tr data-campaign="{c}">(.*?)</tr>', html, re.S))
        for c in (fast, slow)
    }
    assert re.search(r"3\.0/min \(last 2 min\)", rows[fast]), rows[fast]
    assert re.search(r"0\.5/min \(last 2 min\)", rows[slow]), rows[slow]
    assert re.search(r" 40s at the last 2 min's rate", rows[fast]), rows[fast]  # 2 left
    assert re.search(r" 4m at the last 2 min's rate", rows[slow]), rows[slow]  # 2 left
    page = browser(api).get(f"/campaigns/{fast}").text
    assert (
        'ETA <span class="eta">40s</span> <span class="muted">at the last 2 min&#39;s rate' in page
    )


@pytest.fixture
def sweep(api: TestClient) -> int:
    campaign(api, "other")  # ids differ between tables
    c = campaign(api, "sweep")
    records = [
        {
            "key": f"{phase}-{T}",
            "command": "x",
            "params": {"T": T, "phase": phase, "relaxed": T > 300},
            "tags": ["hot"] if T >= 600 else [],
            "dataset": phase,
        }
        for phase in ("fcc", "bcc")
        for T in (300, 600, 900)
    ]
    assert (
        api.post(f"{API}/records", json={"campaign_id": c, "records": records}).status_code == 201
    )
    body = {"agent_id": agent(api), "max_records": 4, "campaign_id": c}
    for lease in api.post(f"{API}/leases", json=body).json()["leases"]:
        result = {"energy": -float(lease["key"].split("-")[1]) / 100, "cell": {"a": 4.05}}
        if lease["key"] == "fcc-900":
            result["note"] = 'melted, "liquid"'
        done = {"token": lease["token"], "result": result}
        assert api.post(f"{API}/runs/{lease['run_id']}/complete", json=done).status_code == 200
    return c


def table(html: str) -> tuple[list[str], list[list[str]]]:
    """The record list's header and rows, as text."""
    body = re.search(r'<table id="records">(.*?)</table>', html, re.S).group(1)
    header = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", body)]
    rows = [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r'<tr data-record="\d+">(.*?)</tr>', body, re.S)
    ]
    return header, rows


def test_the_record_list_shows_params_and_chosen_result_fields_as_columns(
    api: TestClient, sweep: int
) -> None:
    client = browser(api)
    page = client.get(f"/campaigns/{sweep}?dataset=fcc").text
    header, rows = table(page)
    assert header[:6] == ["id", "key", "state", "T", "phase", "relaxed"]
    assert [row[1:6] for row in rows] == [
        ["fcc-300", "done", "300", "fcc", "false"],
        ["fcc-600", "done", "600", "fcc", "true"],
        ["fcc-900", "done", "900", "fcc", "true"],
    ]
    # The form offers the result fields of the newest done records, as checkboxes.
    offered = re.findall(r'name="columns" value="([^"]+)"', page)
    assert offered == ["cell.a", "energy", "note"]
    page = client.get(f"/campaigns/{sweep}?dataset=fcc&columns=energy&columns=note").text
    header, rows = table(page)
    assert header[3:8] == ["T", "phase", "relaxed", "energy", "note"]
    assert [row[6:8] for row in rows] == [
        ["-3.0", ""],
        ["-6.0", ""],
        ["-9.0", "melted, &#34;liquid&#34;"],
    ]
    assert re.search(r'name="columns" value="energy" checked', page)
    live = client.get(f"/campaigns/{sweep}?dataset=fcc&columns=energy", headers=LIVE).text
    assert table(live)[0][6] == "energy" and 'name="columns"' not in live
    too_many = "&".join(f"columns=f{i}" for i in range(13))
    bad = client.get(f"/campaigns/{sweep}?{too_many}")
    assert bad.status_code == 422 and "at most 12 result columns" in bad.text


def test_next_and_previous_keep_the_filter_and_the_columns(api: TestClient) -> None:
    c = campaign(api)
    records = [{"key": f"k{i:03d}", "command": "x", "params": {"T": i}} for i in range(120)]
    assert (
        api.post(f"{API}/records", json={"campaign_id": c, "records": records}).status_code == 201
    )
    page = browser(api).get(f"/campaigns/{c}?where=T%3E%3D10&columns=energy").text
    link = re.search(r'rel="next" href="([^"]+)"', page)
    assert link and link.group(1).startswith(
        f"/campaigns/{c}?where=T%3E%3D10&amp;columns=energy&amp;after="
    )


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_link_downloads_exactly_what_the_filter_shows(api: TestClient, sweep: int) -> None:
    client = browser(api)
    for query, keys in (
        ("", ["fcc-300", "fcc-600", "fcc-900", "bcc-300", "bcc-600", "bcc-900"]),
        ("?dataset=bcc", ["bcc-300", "bcc-600", "bcc-900"]),
        ("?tag=hot&key=fcc", ["fcc-600", "fcc-900"]),
        ("?where=T%3E%3D600&where=phase%3D%27bcc%27", ["bcc-600", "bcc-900"]),
        ("?state=done&tag=hot", ["fcc-600", "fcc-900"]),
    ):
        page = client.get(f"/campaigns/{sweep}{query}").text
        shown = re.findall(r'<a href="/records/\d+">([^<]+)</a>', page)
        link = re.search(r'<a id="results-csv" href="([^"]+)"', page).group(1)
        got = client.get(link.replace("&amp;", "&"))
        assert got.status_code == 200, got.text
        rows = csv_rows(got.text)
        assert [row["key"] for row in rows] == shown == keys, query
    rows = csv_rows(client.get(f"/campaigns/{sweep}/results.csv?key=fcc-9").text)
    assert rows == [
        {
            "key": "fcc-900", "state": "done", "T": "900", "phase": "fcc", "relaxed": "true",
            "cell.a": "4.05", "energy": "-9.0", "note": 'melted, "liquid"',
            "attempts": "1", "runtime_s": "", "error": "",
        }
    ]  # fmt: skip
    bad = client.get(f"/campaigns/{sweep}/results.csv?where=nope%3D1")
    assert bad.status_code == 422 and "no record of campaign" in bad.text
