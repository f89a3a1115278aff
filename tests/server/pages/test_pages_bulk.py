"""Cancel and retry what the campaign page's filter shows, in two steps (confirmation with
the server's count, then the action on exactly that filter), on both databases: counts,
what changes and what does not, CSRF, origin and roles."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import API, agent, campaign, counts, ids_by_key, record
from tests.server.pages.test_pages import browser, csrf_of, fail, token

HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


def hidden(page: str, form: str) -> dict[str, list[str]]:
    """The hidden fields of the form with id `form`, as a form would send them."""
    found = re.search(rf'<form[^>]*id="{form}".*?</form>', page, re.S)
    assert found, page
    fields: dict[str, list[str]] = {}
    for name, value in HIDDEN.findall(found.group(0)):
        fields.setdefault(name, []).append(html.unescape(value))
    return fields


@pytest.fixture
def world(api: TestClient) -> dict[str, Any]:
    """Two campaigns; in `eos`: keys with prefixes, tags, datasets, params; some records
    claimed, failed and done."""
    other = campaign(api, "other")
    body = {"campaign_id": other, "records": [{"key": "relax-o", "command": "x", "tags": ["hot"]}]}
    assert api.post(f"{API}/records", json=body).status_code == 201
    c = campaign(api, "eos", max_attempts=1)
    specs = [
        {
            "key": f"{kind}-{i}",
            "command": "x",
            "params": {"T": 300 * (1 + i % 3)},
            "tags": ["hot"] if i % 2 else ["cold"],
            "dataset": "fcc" if i < 6 else "bcc",
            "priority": 10 if kind == "early" else 0,
        }
        for kind in ("early", "relax")
        for i in range(9)
    ]
    assert api.post(f"{API}/records", json={"campaign_id": c, "records": specs}).status_code == 201
    a = agent(api)
    leases = api.post(f"{API}/leases", json={"agent_id": a, "max_records": 6, "campaign_id": c})
    early = leases.json()["leases"]  # early-0 … early-5 claimed
    for lease in early[:2]:
        fail(api, lease, "boom\n")
    done = {"token": early[2]["token"], "result": {"e": -1}}
    assert api.post(f"{API}/runs/{early[2]['run_id']}/complete", json=done).status_code == 200
    return {"campaign": c, "other": other, "ids": ids_by_key(api, c)}


def ask(client: TestClient, c: int, query: str, action: str) -> tuple[str, dict[str, list[str]]]:
    """Open the campaign page with `query`, press the bulk form's button: the confirmation."""
    page = client.get(f"/campaigns/{c}{query}")
    assert page.status_code == 200, page.text
    fields = hidden(page.text, "bulk")
    r = client.post(f"/campaigns/{c}/bulk", data={**fields, "action": action})
    assert r.status_code == 200, r.text
    return r.text, fields


def states(api: TestClient, c: int) -> dict[str, str]:
    r = api.get(f"{API}/records", params={"campaign_id": c, "limit": 1000})
    return {item["key"]: item["state"] for item in r.json()["items"]}


def test_a_bulk_cancel_asks_with_the_count_then_cancels_exactly_the_filter(
    api: TestClient, world: dict[str, Any]
) -> None:
    c = world["campaign"]
    client = browser(api)
    before = states(api, c)
    # early-1, -3, -5 are hot; early-1 failed, -3 and -5 claimed; T>=600 leaves -1 and -5.
    asked, sent = ask(client, c, "?tag=hot&key=early-&where=T%3E%3D600", "cancel")
    assert sent["tag"] == ["hot"] and sent["key"] == ["early-"] and sent["where"] == ["T>=600"]
    ask_line = re.search(r'<h1 id="ask">(.*?)</h1>', asked)
    assert ask_line and ask_line.group(1) == "Cancel 3 records shown by this filter?"
    plan = re.sub(r"<[^>]+>", "", re.search(r'<ul id="plan">(.*?)</ul>', asked, re.S).group(1))
    assert "2 will be cancelled: ready 1, claimed 1 (running ones are stopped" in plan
    assert "1 will be skipped: failed 1 (they have ended: nothing to cancel)" in plan
    assert "<code>tagged hot</code>, <code>key starts with early-</code>" in asked
    assert re.search(r'id="confirm"[^>]*>Cancel 2 records</button>', asked)
    fields = hidden(asked, "confirm-form")
    assert fields["through"] == [str(max(world["ids"][k] for k in ("early-5", "early-7")))]
    assert counts(api, c) == {"failed": 2, "done": 1, "claimed": 3, "ready": 12}  # asked only
    r = client.post(f"/campaigns/{c}/bulk/confirm", data=fields)
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(f"/campaigns/{c}?tag=hot&key=early-&where=T%3E%3D600&did=")
    said = client.get(location).text
    assert "Cancelled 2 records. Skipped: 1 is failed: nothing to cancel." in html.unescape(said)
    after = states(api, c)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"early-5", "early-7"}
    assert after["early-5"] == after["early-7"] == "cancelled"
    (other,) = states(api, world["other"]).values()
    assert other == "ready"


def test_a_bulk_retry_re_queues_exactly_the_failed_ones_the_filter_shows(
    api: TestClient, world: dict[str, Any]
) -> None:
    c = world["campaign"]
    client = browser(api)
    before = states(api, c)
    asked, _ = ask(client, c, "?dataset=fcc&key=early", "retry")
    assert re.search(r'<h1 id="ask">Retry 6 records shown by this filter\?</h1>', asked)
    plan = re.sub(r"<[^>]+>", "", re.search(r'<ul id="plan">(.*?)</ul>', asked, re.S).group(1))
    assert "2 will be re-queued: failed 2." in plan
    assert "4 will be skipped: claimed 3, done 1 (only failed, cancelled and orphaned" in plan
    r = client.post(f"/campaigns/{c}/bulk/confirm", data=hidden(asked, "confirm-form"))
    assert r.status_code == 303
    said = html.unescape(client.get(r.headers["location"]).text)
    assert "Re-queued 2 records. Skipped: 3 are claimed; re-queue it anyway" in said
    after = states(api, c)
    assert {k for k in after if after[k] != before[k]} == {"early-0", "early-1"}
    assert after["early-0"] == after["early-1"] == "ready"


def test_the_action_leaves_records_submitted_after_the_count_alone(
    api: TestClient, world: dict[str, Any]
) -> None:
    c = world["campaign"]
    client = browser(api)
    asked, _ = ask(client, c, "?key=relax-&state=ready", "cancel")
    assert re.search(r'<h1 id="ask">Cancel 9 records', asked)
    late = {"key": "relax-late", "command": "x"}
    assert api.post(f"{API}/records", json={"campaign_id": c, "records": [late]}).status_code == 201
    r = client.post(f"/campaigns/{c}/bulk/confirm", data=hidden(asked, "confirm-form"))
    assert "Cancelled+9+records." in r.headers["location"]
    got = states(api, c)
    assert got["relax-late"] == "ready"
    assert all(got[f"relax-{i}"] == "cancelled" for i in range(9))


def test_a_forged_or_foreign_bulk_post_is_refused_and_changes_nothing(
    api: TestClient, world: dict[str, Any]
) -> None:
    c = world["campaign"]
    client = browser(api)
    before = counts(api, c)
    asked, _ = ask(client, c, "?state=ready", "cancel")
    fields = hidden(asked, "confirm-form")
    for forged in ({**fields, "csrf": "0" * 32}, {k: v for k, v in fields.items() if k != "csrf"}):
        r = client.post(f"/campaigns/{c}/bulk/confirm", data=forged)
        assert r.status_code == 403 and "CSRF" in r.text
        r = client.post(f"/campaigns/{c}/bulk", data={**forged, "action": "cancel"})
        assert r.status_code == 403
    evil = {"Origin": "https://evil.example"}
    r = client.post(f"/campaigns/{c}/bulk/confirm", data=fields, headers=evil)
    assert r.status_code == 403 and "evil.example" in r.text
    # Another session's token is no better than a forged one.
    other = browser(api, token(api, "submitter"))
    assert other.post(f"/campaigns/{c}/bulk/confirm", data=fields).status_code == 403
    assert counts(api, c) == before


def test_agent_tokens_cannot_act_in_bulk_and_submitters_can(
    api: TestClient, world: dict[str, Any]
) -> None:
    from farmhand.server.pages.access import COOKIE, csrf_token

    c = world["campaign"]
    before = counts(api, c)
    secret = token(api, "agent")
    intruder = TestClient(api.app, follow_redirects=False)
    intruder.cookies.set(COOKIE, secret)  # a session set by hand: agent tokens cannot log in
    form = {"csrf": csrf_token(secret), "action": "cancel", "state": "ready"}
    r = intruder.post(f"/campaigns/{c}/bulk", data=form)
    assert r.status_code == 403 and "cannot use the pages" in r.text
    confirm = {**form, "through": str(max(world["ids"].values())), "expected": "12"}
    assert intruder.post(f"/campaigns/{c}/bulk/confirm", data=confirm).status_code == 403
    anonymous = TestClient(api.app, follow_redirects=False)
    r = anonymous.post(f"/campaigns/{c}/bulk/confirm", data=confirm)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert counts(api, c) == before
    submitter = browser(api, token(api, "submitter"))
    asked, _ = ask(submitter, c, "?state=ready&key=relax-1", "cancel")
    r = submitter.post(f"/campaigns/{c}/bulk/confirm", data=hidden(asked, "confirm-form"))
    assert r.status_code == 303 and record(api, world["ids"]["relax-1"])["state"] == "cancelled"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": "delete"}, "unknown action"),
        ({"action": "cancel", "tag": "no spaces"}, "is not a name"),
        ({"action": "cancel", "where": "T>>1"}, "is not NAME OP VALUE"),
        ({"action": "cancel", "where": "nope=1"}, "no record of campaign"),
        ({"action": "cancel", "state": "finished"}, "unknown state"),
        ({"action": "cancel", "where": "phase='a\x00'"}, "NUL character"),
        ({"action": "cancel", "key": "k" * 257}, "at most 256 characters"),
    ],
)
def test_a_bad_bulk_form_is_a_422_page_and_changes_nothing(
    api: TestClient, world: dict[str, Any], fields: dict[str, str], message: str
) -> None:
    c = world["campaign"]
    client = browser(api)
    csrf = csrf_of(client.get(f"/campaigns/{c}").text)
    before = counts(api, c)
    for step, extra in (("bulk", {}), ("bulk/confirm", {"through": "999999", "expected": "1"})):
        r = client.post(f"/campaigns/{c}/{step}", data={"csrf": csrf, **fields, **extra})
        assert r.status_code == 422 and message in html.unescape(r.text), (step, r.text)
    for through in ("", "\u00b2", "9" * 30, "-1"):
        form = {"csrf": csrf, "action": "cancel", "through": through, "expected": "1"}
        r = client.post(f"/campaigns/{c}/bulk/confirm", data=form)
        assert r.status_code == 422 and "lost its count" in r.text, through
    assert counts(api, c) == before


def test_a_filter_matching_nothing_offers_no_action(api: TestClient, world: dict[str, Any]) -> None:
    asked, _ = ask(browser(api), world["campaign"], "?key=zzz", "retry")
    assert '<h1 id="ask">No record matches this filter: nothing to retry.</h1>' in asked
    assert 'id="confirm"' not in asked


def test_a_large_filter_goes_page_by_page_and_stops_at_the_bound(
    api: TestClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from farmhand.server.catalog import walk
    from farmhand.server.pages import bulk

    monkeypatch.setattr(walk, "BULK_PAGE", 2)
    monkeypatch.setattr(bulk, "MAX_PAGES", 3)
    c = world["campaign"]
    client = browser(api)
    asked, _ = ask(client, c, "?key=relax-", "cancel")
    assert "One confirmation acts on the first 6 of them" in asked
    r = client.post(f"/campaigns/{c}/bulk/confirm", data=hidden(asked, "confirm-form"))
    said = html.unescape(client.get(r.headers["location"]).text)
    assert "Cancelled 6 records. Stopped after record" in said
    got = states(api, c)
    assert [got[f"relax-{i}"] for i in range(9)] == ["cancelled"] * 6 + ["ready"] * 3


def test_a_campaign_id_beyond_the_ids_is_refused_not_a_crash(
    api: TestClient, world: dict[str, Any]
) -> None:
    client = browser(api)
    csrf = csrf_of(client.get(f"/campaigns/{world['campaign']}").text)
    for step in ("bulk", "bulk/confirm"):
        form = {"csrf": csrf, "action": "cancel", "through": "1", "expected": "1"}
        r = client.post(f"/campaigns/{2**40}/{step}", data=form)
        assert r.status_code == 422 and "campaign_id" in r.text, r.text
        r = client.post("/campaigns/999999/bulk", data=form)
        assert r.status_code == 404 and "999999" in r.text


def test_the_report_says_when_the_filter_matched_fewer_than_asked(
    api: TestClient, world: dict[str, Any]
) -> None:
    c = world["campaign"]
    client = browser(api)
    asked, _ = ask(client, c, "?state=ready&key=relax-", "cancel")
    assert re.search(r'<h1 id="ask">Cancel 9 records', asked)
    body = {"agent_id": agent(api, "late"), "max_records": 5, "campaign_id": c}
    taken = [lease["key"] for lease in api.post(f"{API}/leases", json=body).json()["leases"]]
    assert taken[3:] == ["relax-0", "relax-1"]  # claimed meanwhile: no longer ready
    r = client.post(f"/campaigns/{c}/bulk/confirm", data=hidden(asked, "confirm-form"))
    said = html.unescape(client.get(r.headers["location"]).text)
    assert "Cancelled 7 records. The filter matched 7 by then (9 when asked)." in said
    got = states(api, c)
    assert [got[f"relax-{i}"] for i in range(9)] == ["claimed"] * 2 + ["cancelled"] * 7
