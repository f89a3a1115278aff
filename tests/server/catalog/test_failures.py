"""Failed records grouped by cause (issue 19 item 2): the API, the campaign page and its
"Retry these" button, on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from farmhand.server.catalog.failures import signature
from tests.server.helpers import API, agent, campaign, ids_by_key, record, submit
from tests.server.pages.test_pages import browser, csrf_of


def test_a_signature_masks_what_differs_between_records() -> None:
    one = signature(
        "exit code 3", "reading /scratch/u1/run-17/in.xyz\nERROR: lost atoms at step 1234\n"
    )
    two = signature("exit code 3", "ERROR: lost atoms at step 99\n\n")
    assert one == two == "exit code <n> | ERROR: lost atoms at step <n>"
    assert signature("timed out after 600 s", None) == "timed out after <n> s"
    assert signature(None, "core dumped at 0x7ffd1234 in /usr/lib/libm.so.6") == (
        "no error given | core dumped at <hex> in <path>"
    )
    assert signature("exit code 3", "segfault") != signature("exit code 3", "lost atoms")


def fail(api: TestClient, lease: dict, error: str, stderr: str | None) -> None:
    body = {"token": lease["token"], "error": error, "stderr_tail": stderr}
    r = api.post(f"{API}/runs/{lease['run_id']}/fail", json=body)
    assert r.status_code == 200 and r.json()["record_state"] == "failed", r.text


def failing_campaign(api: TestClient, name: str = "md") -> int:
    """Six records: three lose atoms (each at its own step), one segfaults, one is done and
    one still ready."""
    c = campaign(api, name, max_attempts=1)
    submit(api, c, "a1", "a2", "seg", "a3", "ok", "later")
    body = {"agent_id": agent(api, f"w-{name}"), "max_records": 5, "campaign_id": c}
    leases = {
        lease["key"]: lease for lease in api.post(f"{API}/leases", json=body).json()["leases"]
    }
    for key, step in (("a1", 17), ("a2", 2048), ("a3", 5)):
        fail(api, leases[key], "exit code 2", f"step {step}\nERROR: lost atoms at step {step}")
    fail(api, leases["seg"], "killed by signal 11", "Segmentation fault (core dumped)")
    done = {"token": leases["ok"]["token"], "result": {}}
    assert api.post(f"{API}/runs/{leases['ok']['run_id']}/complete", json=done).is_success
    return c


def test_failures_are_grouped_by_cause_biggest_first(api: TestClient) -> None:
    other = failing_campaign(api, "other")  # not in the answer below
    c = failing_campaign(api)
    ids = ids_by_key(api, c)
    r = api.get(f"{API}/campaigns/{c}/failures")
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["campaign_id"], got["failed"], got["scanned"]) == (c, 4, 4)
    lost, seg = got["groups"]
    assert (lost["count"], lost["signature"]) == (
        3,
        "exit code <n> | ERROR: lost atoms at step <n>",
    )
    assert [x["key"] for x in lost["records"]] == ["a3", "a2", "a1"]  # newest first
    assert [x["id"] for x in lost["records"]] == [ids["a3"], ids["a2"], ids["a1"]]
    assert lost["error"] == "exit code 2" and lost["stderr_tail"].endswith("at step 5")
    assert (seg["count"], seg["records"][0]["id"]) == (1, ids["seg"])
    assert api.get(f"{API}/campaigns/{other + c + 1000}/failures").status_code == 404
    assert api.get(f"{API}/campaigns/{other}/failures").json()["campaign_id"] == other


def test_the_campaign_page_shows_the_groups_and_retries_one(api: TestClient) -> None:
    c = failing_campaign(api)
    ids = ids_by_key(api, c)
    viewer = browser(api)
    page = viewer.get(f"/campaigns/{c}")
    assert page.status_code == 200, page.text
    assert "Failures by cause" in page.text and "Retry these 3" in page.text
    assert "ERROR: lost atoms at step &lt;n&gt;" in page.text
    form = {
        "csrf": csrf_of(page.text),
        "signature": "exit code <n> | ERROR: lost atoms at step <n>",
    }
    r = viewer.post(f"/campaigns/{c}/failures/retry", data=form)
    assert r.status_code == 303, r.text
    assert "re-queued+3+record" in r.headers["location"]
    states = {key: record(api, rid)["state"] for key, rid in ids.items()}
    assert states == {
        "a1": "ready",
        "a2": "ready",
        "a3": "ready",
        "seg": "failed",
        "ok": "done",
        "later": "ready",
    }
    again = viewer.post(f"/campaigns/{c}/failures/retry", data=form)
    assert again.status_code == 409 and "no failed record has that cause" in again.text
    forged = viewer.post(f"/campaigns/{c}/failures/retry", data={**form, "csrf": "0" * 32})
    assert forged.status_code == 403
    assert record(api, ids["seg"])["state"] == "failed"


def test_the_overview_shows_each_campaigns_top_causes(api: TestClient) -> None:
    quiet = campaign(api, "quiet")
    submit(api, quiet, "fine")
    c = failing_campaign(api)
    page = browser(api).get("/")
    assert page.status_code == 200, page.text
    causes = page.text.split('<table id="causes">', 1)[1].split("</table>", 1)[0]
    assert causes.count(f'data-campaign="{c}"') == 2 and f'data-campaign="{quiet}"' not in causes
    assert causes.index("lost atoms") < causes.index("killed by signal")  # biggest first


LOST = "exit code <n> | ERROR: lost atoms at step <n>"


def test_one_groups_records_are_paged_newest_first(api: TestClient) -> None:
    failing_campaign(api, "other")  # the same cause in another campaign: never listed
    c = failing_campaign(api)
    ids = ids_by_key(api, c)
    url = f"{API}/campaigns/{c}/failures"
    first = api.get(url, params={"signature": LOST, "limit": 2}).json()
    (group,) = first["groups"]
    assert group["count"] == 3 and group["signature"] == LOST
    assert [x["id"] for x in group["records"]] == [ids["a3"], ids["a2"]]
    assert group["next"] == ids["a2"]
    rest = api.get(url, params={"signature": LOST, "limit": 2, "after": group["next"]}).json()
    (tail,) = rest["groups"]
    assert [x["id"] for x in tail["records"]] == [ids["a1"]] and tail["next"] is None
    assert tail["count"] == 3  # the group's size, not the page's
    # A page that fits the group has no `next`; a cause nobody has gives no group.
    whole = api.get(url, params={"signature": LOST}).json()["groups"][0]
    assert len(whole["records"]) == 3 and whole["next"] is None
    assert api.get(url, params={"signature": "no such cause"}).json()["groups"] == []
    # Every group names at most `limit` records and says where the next page starts.
    groups = api.get(url, params={"limit": 1}).json()["groups"]
    assert [(len(g["records"]), g["next"]) for g in groups] == [(1, ids["a3"]), (1, None)]


def test_paging_needs_a_signature_and_sane_bounds(api: TestClient) -> None:
    c = failing_campaign(api)
    url = f"{API}/campaigns/{c}/failures"
    alone = api.get(url, params={"after": 5})
    assert alone.status_code == 422 and "signature" in alone.json()["detail"]
    assert api.get(url, params={"limit": 0}).status_code == 422
    assert api.get(url, params={"limit": 1001}).status_code == 422
    assert api.get(url, params={"signature": "x" * 1001}).status_code == 422


def test_the_page_of_one_cause_links_its_records_page_by_page(api: TestClient) -> None:
    c = campaign(api, "big", max_attempts=1)
    keys = [f"k{i:02d}" for i in range(55)]
    submit(api, c, *keys)
    body = {"agent_id": agent(api, "w"), "max_records": 55, "campaign_id": c}
    for lease in api.post(f"{API}/leases", json=body).json()["leases"]:
        fail(api, lease, "exit code 1", f"ERROR: diverged at iteration {lease['key']}")
    ids = ids_by_key(api, c)
    viewer = browser(api)
    campaign_page = viewer.get(f"/campaigns/{c}").text
    link = campaign_page.split('class="all-failed" href="', 1)[1].split('"', 1)[0]
    first = viewer.get(link.replace("&amp;", "&"))
    assert first.status_code == 200, first.text
    assert "55 failed with one cause" in first.text and "Retry these 55" in first.text
    listed = first.text.split('<ul id="failed-records">', 1)[1].split("</ul>", 1)[0]
    newest = sorted(ids.values(), reverse=True)
    assert [f'/records/{rid}"' in listed for rid in newest[:50]] == [True] * 50
    assert f'/records/{newest[50]}"' not in listed
    older = first.text.split('id="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    second = viewer.get(older).text.split('<ul id="failed-records">', 1)[1].split("</ul>", 1)[0]
    assert [f'/records/{rid}"' in second for rid in newest[50:]] == [True] * 5
    assert second.count("<li>") == 5
    gone = viewer.get(f"/campaigns/{c}/failures", params={"signature": "nothing like it"})
    assert gone.status_code == 200 and "No failed record has that cause" in gone.text
