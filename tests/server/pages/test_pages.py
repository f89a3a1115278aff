"""The status pages in-process: login and session cookie, CSRF, roles, and what each page shows.

(A real browser drives them in tests/e2e/integrations/test_browser.py.)
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from farmhand.server.pages.access import COOKIE, csrf_token, safe_next
from tests.conftest import ADMIN
from tests.server.helpers import API, agent, campaign, claim, ids_by_key, record, submit

LIVE = {"X-Farmhand-Live": "1"}


def token(api: TestClient, role: str) -> str:
    r = api.post(f"{API}/tokens", json={"role": role, "name": role})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def browser(api: TestClient, secret: str | None = ADMIN) -> TestClient:
    """A cookie-carrying client of the same app, logged in with `secret` (no bearer header)."""
    client = TestClient(api.app, follow_redirects=False)
    if secret is not None:
        r = client.post("/login", data={"token": secret, "next": "/"})
        assert r.status_code == 303, r.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def fail(api: TestClient, lease: dict, stderr: str, exit_code: int = 2) -> None:
    body = {"token": lease["token"], "error": f"exit code {exit_code}", "exit_code": exit_code}
    r = api.post(f"{API}/runs/{lease['run_id']}/fail", json={**body, "stderr_tail": stderr})
    assert r.status_code == 200, r.text


def test_pages_send_a_stranger_to_the_login_form(api: TestClient) -> None:
    stranger = browser(api, None)
    for path in ("/", "/campaigns/1", "/records/1?x=1"):
        r = stranger.get(path)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=%2F")
    assert (
        stranger.get("/records/1?x=1").headers["location"] == "/login?next=%2Frecords%2F1%3Fx%3D1"
    )
    # A live refresh gets a 401 the page's script understands, not a redirect to follow.
    assert stranger.get("/", headers=LIVE).status_code == 401
    form = stranger.get("/login?next=/campaigns/1")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert 'name="next" value="/campaigns/1"' in form.text


def test_login_sets_a_strict_httponly_cookie_and_goes_on(api: TestClient) -> None:
    client = TestClient(api.app, follow_redirects=False)
    r = client.post("/login", data={"token": ADMIN, "next": "/campaigns/7"})
    assert r.status_code == 303 and r.headers["location"] == "/campaigns/7"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; set over https
    assert client.get("/").status_code == 200


def test_a_wrong_token_gets_the_form_again_with_the_reason(api: TestClient) -> None:
    client = TestClient(api.app, follow_redirects=False)
    r = client.post("/login", data={"token": "fh_wrong", "next": "/"})
    assert r.status_code == 401
    assert "unknown or revoked token" in r.text
    assert "set-cookie" not in r.headers
    assert client.get("/").status_code == 303


def test_login_never_redirects_to_another_site() -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil", "", None, "records"):
        assert safe_next(target) == "/"
    assert safe_next("/records/3?did=cancelled") == "/records/3?did=cancelled"


def test_overview_shows_progress_agents_and_failures(api: TestClient) -> None:
    c = campaign(api, "relax", max_attempts=1)
    submit(api, c, "a", "b", "c", "d")
    a = agent(api, "node17")
    first, _ = claim(api, a, 2)
    fail(api, first, "Traceback:\nValueError: negative volume\n")
    page = browser(api).get("/")
    assert page.status_code == 200
    html = page.text
    row = re.search(rf'<tr data-campaign="{c}">(.*?)</tr>', html, re.S)
    assert row, html
    counts = dict(re.findall(r'class="count" data-state="(\w+)">([\d,]+)<', row.group(1)))
    assert counts == {"failed": "1", "claimed": "1", "ready": "2"}
    assert ">relax<" in row.group(1) and "25.0%" in row.group(1)
    agents = re.search(rf'<tr data-agent="{a}">(.*?)</tr>', html, re.S)
    assert agents and "node17" in agents.group(1)
    assert re.search(r"data-running>1<", agents.group(1))
    failures = re.search(r'<table id="failures">(.*?)</table>', html, re.S)
    assert failures and "ValueError: negative volume" in failures.group(1)
    assert f'href="/records/{first["record_id"]}"' in failures.group(1)
    assert 'href="/docs"' in html and 'href="/redoc"' in html


def test_overview_says_why_ready_records_are_not_moving(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a", "b")
    submit(api, c, "md", runner="lammps")
    client = browser(api)
    notice = re.search(r'<div class="notice" id="stuck".*?</div>', client.get("/").text, re.S)
    assert notice and "3 ready records, no live agent" in notice.group(0)
    body = {"name": "n1", "host": "h", "slots": 2, "runners": ["subprocess"]}
    body["resources"] = {"cores": 8, "gpus": 1, "memory_mb": 16384}
    assert api.post(f"{API}/agents", json=body).status_code == 201
    html = client.get("/", headers=LIVE).text
    notice = re.search(r'<div class="notice" id="stuck".*?</div>', html, re.S)
    assert notice, html
    assert re.findall(r'<li data-reason="(\w+)">([^<]+)</li>', notice.group(0)) == [
        ("runner", "1 ready record needs runner &#39;lammps&#39;, offered by no live agent")
    ]
    assert "8 cores · 1 GPU · 16 GiB · subprocess" in html
    register_old = {"name": "old", "host": "h", "slots": 2}
    assert api.post(f"{API}/agents", json=register_old).status_code == 201
    html = client.get("/").text
    assert 'id="stuck"' not in html and "any runner" in html


def test_a_live_refresh_answers_with_only_the_live_region(api: TestClient) -> None:
    submit(api, campaign(api), "a")
    client = browser(api)
    full = client.get("/")
    live = client.get("/", headers=LIVE)
    assert live.status_code == 200
    assert "<html" not in live.text and "<h1>Campaigns</h1>" in live.text
    assert '<div id="live" data-refresh="3.0">' in full.text
    assert live.headers["vary"] == "X-Farmhand-Live"
    assert live.headers["cache-control"] == "no-store"


def test_pages_load_nothing_from_elsewhere_and_allow_no_inline_code(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a")
    client = browser(api)
    for path in ("/", f"/campaigns/{c}", f"/records/{ids_by_key(api, c)['a']}", "/login"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert not re.search(r'(src|href)="(https?:)?//', r.text), path
        assert "<script>" not in r.text and "style=" not in r.text, path
    for asset in ("/static/farmhand.js", "/static/farmhand.css", "/static/favicon.svg"):
        assert client.get(asset).status_code == 200, asset


def test_campaign_page_filters_by_state_and_key_prefix_and_pages(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, *[f"k{i:03d}" for i in range(120)], "other")
    a = agent(api)
    claim(api, a, 3)
    client = browser(api)

    def keys(query: str) -> list[str]:
        r = client.get(f"/campaigns/{c}{query}")
        assert r.status_code == 200, r.text
        return re.findall(r'<a href="/records/\d+">([^<]+)</a>', r.text)

    assert keys("?state=claimed") == ["k000", "k001", "k002"]
    assert keys("?key=k11") == [f"k11{i}" for i in range(10)]
    assert keys("?key=oth") == ["other"]
    assert keys("?key=k11&state=claimed") == []
    first = client.get(f"/campaigns/{c}").text
    assert len(re.findall(r"<tr data-record=", first)) == 50
    after = re.search(r'rel="next" href="/campaigns/\d+\?after=(\d+)"', first)
    assert after and 'rel="prev"' not in first
    second = client.get(f"/campaigns/{c}?after={after.group(1)}").text
    assert re.findall(r'<a href="/records/\d+">([^<]+)</a>', second)[0] == "k050"
    before = re.search(r'rel="prev" href="/campaigns/\d+\?before=(\d+)"', second)
    assert before
    back = client.get(f"/campaigns/{c}?before={before.group(1)}").text
    assert re.findall(r'<a href="/records/\d+">([^<]+)</a>', back)[:2] == ["k000", "k001"]
    bad = client.get(f"/campaigns/{c}?state=bogus")
    assert bad.status_code == 422 and "unknown state" in bad.text
    assert client.get("/campaigns/999").status_code == 404


def test_campaign_page_filters_by_dataset_and_tag(api: TestClient) -> None:
    c = campaign(api)
    records = [
        {"key": f"r{i}", "command": "x", "dataset": "fcc" if i % 2 else "bcc", "tags": tags}
        for i, tags in enumerate([["Al"], ["Al", "hot"], [], ["hot"], ["Al"]])
    ]
    r = api.post(f"{API}/records", json={"campaign_id": c, "records": records})
    assert r.status_code == 201, r.text
    client = browser(api)

    def keys(query: str) -> list[str]:
        r = client.get(f"/campaigns/{c}{query}")
        assert r.status_code == 200, r.text
        return re.findall(r'<a href="/records/\d+">([^<]+)</a>', r.text)

    assert keys("?dataset=fcc") == ["r1", "r3"]
    assert keys("?tag=Al") == ["r0", "r1", "r4"]
    assert keys("?tag=hot&dataset=fcc") == ["r1", "r3"]
    assert keys("?tag=Al&dataset=bcc&key=r4") == ["r4"]
    assert keys("?tag=none") == []
    page = client.get(f"/campaigns/{c}?tag=hot").text
    assert 'name="tag" value="hot"' in page and '<span class="tag">hot</span>' in page
    bad = client.get(f"/campaigns/{c}?tag=no%20spaces")
    assert bad.status_code == 422 and "tag &#39;no spaces&#39; is not a name" in bad.text


def test_record_page_links_parents_children_dataset_and_tags(api: TestClient) -> None:
    c = campaign(api)
    records = [
        {"key": "relax", "command": "x", "dataset": "fcc", "tags": ["Al"]},
        {"key": "phonons", "command": "x", "parents": ["relax"]},
        {"key": "elastic", "command": "x", "parents": ["relax"]},
    ]
    r = api.post(f"{API}/records", json={"campaign_id": c, "records": records})
    assert r.status_code == 201, r.text
    ids = {key: str(id_) for key, id_ in ids_by_key(api, c).items()}
    client = browser(api)
    root = client.get(f"/records/{ids['relax']}").text
    children = re.search(r'<dd id="children">(.*?)</dd>', root, re.S)
    assert children and re.findall(r'href="/records/(\d+)">(\w+)<', children.group(1)) == [
        (ids["phonons"], "phonons"),
        (ids["elastic"], "elastic"),
    ]
    assert re.search(r'<dd id="parents"><span class="muted">none</span></dd>', root)
    assert f'href="/campaigns/{c}?dataset=fcc"' in root and f'href="/campaigns/{c}?tag=Al"' in root
    leaf = client.get(f"/records/{ids['elastic']}").text
    parents = re.search(r'<dd id="parents">(.*?)</dd>', leaf, re.S)
    assert parents and re.findall(r'href="/records/(\d+)">(\w+)<', parents.group(1)) == [
        (ids["relax"], "relax")
    ]


def test_record_page_shows_spec_run_args_and_every_attempt(api: TestClient) -> None:
    c = campaign(api, "c", max_attempts=2, image="calc:1", retry_delay=0)
    r = api.post(
        f"{API}/records",
        json={
            "campaign_id": c,
            "records": [
                {
                    "key": "r1",
                    "command": "python calc.py",
                    "run_args": {"cores": 4},
                    "params": {"T": 600, "phase": "<fcc>"},
                }
            ],
        },
    )
    assert r.status_code == 201
    a = agent(api, "node3")
    (lease,) = claim(api, a)
    fail(api, lease, "first attempt broke\n", exit_code=3)
    (lease,) = claim(api, a)
    done = {"token": lease["token"], "result": {"energy": -1.5}, "stdout_tail": "converged\n"}
    assert api.post(f"{API}/runs/{lease['run_id']}/complete", json=done).status_code == 200
    html = browser(api).get(f"/records/{lease['record_id']}").text
    assert "python calc.py" in html
    params = re.search(r'<dd id="params">(.*?)</dd>', html, re.S)
    assert params and params.group(1) == "<code>phase=&lt;fcc&gt;</code> <code>T=600</code>"
    derived = re.search(r'<pre id="derived-run-args">(.*?)</pre>', html, re.S)
    assert derived and all(s in derived.group(1) for s in ("cores", "image", "max_attempts"))
    assert "&#34;energy&#34;: -1.5" in html  # the result, escaped
    runs = re.findall(r'<tr data-run="\d+">(.*?)</tr>', html, re.S)
    assert len(runs) == 2  # newest first
    assert "done" in runs[0] and "failed" in runs[1] and "node3" in runs[1]
    assert re.search(r'<td class="num">3</td>', runs[1])
    assert "first attempt broke" in html and "converged" in html
    missing = browser(api).get("/records/999")
    assert missing.status_code == 404 and "record 999 does not exist" in missing.text


def test_cancel_and_retry_buttons_need_the_csrf_token(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a")
    a = ids_by_key(api, c)["a"]
    client = browser(api)
    page = client.get(f"/records/{a}").text
    assert 'id="cancel"' in page and 'id="retry"' not in page
    no_token = client.post(f"/records/{a}/cancel", data={})
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = client.post(f"/records/{a}/cancel", data={"csrf": "0" * 32})
    assert wrong.status_code == 403
    assert record(api, a)["state"] == "ready"
    r = client.post(f"/records/{a}/cancel", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == f"/records/{a}?did=cancelled"
    assert record(api, a)["state"] == "cancelled"
    page = client.get(f"/records/{a}?did=cancelled").text
    assert "Record cancelled." in page and 'id="retry"' in page and 'id="cancel"' not in page
    r = client.post(f"/records/{a}/retry", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and record(api, a)["state"] == "ready"
    again = client.post(f"/records/{a}/retry", data={"csrf": csrf_of(page)})
    assert again.status_code == 409 and "was not retried: it is ready" in again.text


def test_a_post_from_another_origin_is_refused(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a")
    a = ids_by_key(api, c)["a"]
    client = browser(api)
    csrf = csrf_of(client.get(f"/records/{a}").text)
    r = client.post(
        f"/records/{a}/cancel", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403 and "evil.example" in r.text
    assert record(api, a)["state"] == "ready"
    same = client.post(
        f"/records/{a}/cancel", data={"csrf": csrf}, headers={"Origin": "http://testserver"}
    )
    assert same.status_code == 303


def test_agent_tokens_may_not_use_the_pages(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a")
    a = ids_by_key(api, c)["a"]
    secret = token(api, "agent")
    client = TestClient(api.app, follow_redirects=False)
    assert client.post("/login", data={"token": secret, "next": "/"}).status_code == 403
    client.cookies.set(COOKIE, secret)  # a session from before agent tokens were refused
    assert client.get(f"/records/{a}").status_code == 403
    r = client.post(f"/records/{a}/cancel", data={"csrf": csrf_token(secret)})
    assert r.status_code == 403 and "cannot use the pages" in r.text
    assert record(api, a)["state"] == "ready"
    submitter = browser(api, token(api, "submitter"))
    assert 'id="cancel"' in submitter.get(f"/records/{a}").text


def test_logout_ends_the_session(api: TestClient) -> None:
    client = browser(api)
    csrf = csrf_of(client.get("/").text)
    assert client.post("/logout", data={}).status_code == 403  # CSRF-protected too
    r = client.post("/logout", data={"csrf": csrf})
    assert r.status_code == 303 and f'{COOKIE}=""' in r.headers["set-cookie"]
    assert client.get("/").status_code == 303


def test_docs_and_redoc_load_their_assets_from_this_server(api: TestClient) -> None:
    for path, asset in (
        ("/docs", "/static/vendor/swagger-ui/swagger-ui-bundle.js"),
        ("/redoc", "/static/vendor/redoc/redoc.standalone.js"),
    ):
        html = api.get(path, headers={"Authorization": ""}).text
        assert asset in html, path
        assert not re.search(r'(src|href)="https?://', html), path
        assert "fonts.googleapis" not in html
        script = api.get(asset)
        assert script.status_code == 200 and len(script.content) > 500_000
    redoc = api.get("/static/vendor/redoc/redoc.standalone.js").text
    assert "cdn.redoc.ly" not in redoc


def test_campaign_page_links_its_results_as_csv(api: TestClient) -> None:
    campaign(api, "other")  # ids differ between tables
    c = campaign(api, "eos")
    specs = [{"key": f"T{T}", "command": "x", "params": {"T": T}} for T in (300, 600)]
    assert api.post(f"{API}/records", json={"campaign_id": c, "records": specs}).status_code == 201
    (lease,) = claim(api, agent(api))
    done = {"token": lease["token"], "result": {"e": -2}}
    assert api.post(f"{API}/runs/{lease['run_id']}/complete", json=done).status_code == 200
    page = browser(api).get(f"/campaigns/{c}?state=done").text
    link = re.search(r'<a id="results-csv" href="([^"]+)"', page)
    assert link and link.group(1) == f"/campaigns/{c}/results.csv?state=done"
    got = browser(api).get(link.group(1))
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert got.text.splitlines() == [
        "key,state,T,e,attempts,runtime_s,error",
        "T300,done,300,-2,1,,",
    ]
    assert browser(api).get(f"/campaigns/{c}/results.csv").text.count("\n") == 3
    assert browser(api).get("/campaigns/99999/results.csv").status_code == 404
    stranger = browser(api, None).get(f"/campaigns/{c}/results.csv")
    assert stranger.status_code == 303 and stranger.headers["location"].startswith("/login")


def test_an_empty_campaign_reads_empty_not_finished(api: TestClient) -> None:
    r = api.post(f"{API}/campaigns", json={"name": "nothing-yet"})
    empty = r.json()["id"]
    page = browser(api).get("/")
    row = page.text.split(f'data-campaign="{empty}"', 1)[1].split("</tr>", 1)[0]
    assert "<td>empty</td>" in row and "<td>finished</td>" not in row  # the ETA column
