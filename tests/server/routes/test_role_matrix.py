"""The role matrix: every operation of `/openapi.json`, every HTML page and every page form
(POST, with the caller's own CSRF token), asked by each kind of caller, against the answer
class the tables below name.

Callers: no token, a random (wrong) token, the agent token that registered agent A (which
holds a live lease), another agent token (it registered agent B, with its own lease), a
submitter and an admin. Answers are classes, exact where auth decides: 401, 403, 404 (HEAD
hides what an agent token may not read), `login` (a page's redirect to the login form), and
`ok` for anything a caller is let through to (any answer below 500 but 401, 403 or the login
redirect: the body is the route's business, not this test's).

An operation or page missing from the tables fails the test: a new route must be classified
here. It runs on both backends: whether an agent token owns an agent, a run or a lease's
snapshot is decided by SQL (the claim's gate, the reports' lock, the snapshot reach query).
The world is built so that campaign, record, agent, run and token ids all differ, and the
agent tokens' ids differ from their agents' ids: a check comparing the wrong columns fails.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from farmhand.client.transfer import LEASE_HEADER
from farmhand.server.pages import access, bulk
from farmhand.server.pages import routes as page_routes
from tests.server.helpers import API

ROLES = ("none", "wrong", "agent", "other_agent", "submitter", "admin")
OK, LOGIN = "ok", "login"


def _classes(agent: str, other: str, submitter: str, admin: str) -> dict[str, str]:
    return {
        "none": "401",
        "wrong": "401",
        "agent": agent,
        "other_agent": other,
        "submitter": submitter,
        "admin": admin,
    }


PUBLIC = dict.fromkeys(ROLES, OK)
ADMIN = _classes("403", "403", "403", OK)
PEOPLE = _classes("403", "403", OK, OK)  # submitters and admins
ANY_TOKEN = _classes(OK, OK, OK, OK)
AGENTS = _classes(OK, OK, "403", OK)  # register: any agent token, and admins
OWN_AGENT = _classes(OK, "403", "403", OK)  # as agent A or its runs: its token, or an admin
LEASE_READ = _classes(OK, "403", OK, OK)  # a snapshot A's live lease names
LEASE_HEAD = _classes(OK, "404", OK, OK)
UPLOAD = _classes(OK, "403", OK, OK)  # with X-Farmhand-Lease naming A's run

#: (method, path template) → expected class per caller.
API_MATRIX: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/api/v1/campaigns"): ANY_TOKEN,  # `farmhand agent --campaign NAME`
    ("GET", "/api/v1/campaigns/{campaign_id}"): ANY_TOKEN,
    ("POST", "/api/v1/campaigns"): PEOPLE,
    ("POST", "/api/v1/campaigns/{campaign_id}/archive"): PEOPLE,
    ("POST", "/api/v1/campaigns/{campaign_id}/unarchive"): PEOPLE,
    # The token that created it (here: the admin) or an admin; the world's live runs make
    # the admin's answer a 409, which leaves the world as it is.
    ("DELETE", "/api/v1/campaigns/{campaign_id}"): ADMIN,
    ("GET", "/api/v1/tokens"): ADMIN,
    ("POST", "/api/v1/tokens"): ADMIN,
    ("POST", "/api/v1/tokens/{token_id}/revoke"): ADMIN,
    ("GET", "/api/v1/records"): PEOPLE,
    ("GET", "/api/v1/records/{record_id}"): PEOPLE,
    ("POST", "/api/v1/records"): PEOPLE,
    ("POST", "/api/v1/records/count"): PEOPLE,
    ("POST", "/api/v1/records/cancel"): PEOPLE,
    ("POST", "/api/v1/records/retry"): PEOPLE,
    ("GET", "/api/v1/agents"): PEOPLE,
    ("POST", "/api/v1/agents"): AGENTS,
    ("POST", "/api/v1/agents/{agent_id}/heartbeat"): OWN_AGENT,
    ("POST", "/api/v1/agents/{agent_id}/drain"): OWN_AGENT,
    ("POST", "/api/v1/agents/{agent_id}/stop"): OWN_AGENT,
    ("GET", "/api/v1/status"): PEOPLE,
    ("POST", "/api/v1/leases"): OWN_AGENT,
    ("GET", "/api/v1/runs"): PEOPLE,
    ("POST", "/api/v1/runs/reports"): OWN_AGENT,  # per item: 200 with each item "forbidden"
    ("POST", "/api/v1/runs/starts"): OWN_AGENT,  # the same
    ("POST", "/api/v1/runs/{run_id}/start"): OWN_AGENT,
    ("POST", "/api/v1/runs/{run_id}/complete"): OWN_AGENT,
    ("POST", "/api/v1/runs/{run_id}/fail"): OWN_AGENT,
    ("POST", "/api/v1/runs/{run_id}/orphan"): OWN_AGENT,
    ("POST", "/api/v1/runs/{run_id}/release"): OWN_AGENT,
    ("POST", "/api/v1/runs/{run_id}/checkpoints"): OWN_AGENT,
    ("PUT", "/api/v1/snapshots/{sha256}"): UPLOAD,
    ("POST", "/api/v1/snapshots/batch"): UPLOAD,
    ("HEAD", "/api/v1/snapshots/{sha256}"): LEASE_HEAD,
    ("GET", "/api/v1/snapshots/{sha256}"): LEASE_READ,
    ("GET", "/api/v1/snapshots/{sha256}/info"): LEASE_READ,
    ("GET", "/api/v1/snapshots"): PEOPLE,
    ("GET", "/api/v1/bundles/{campaign_id}"): PEOPLE,
    ("GET", "/api/v1/campaigns/{campaign_id}/results"): PEOPLE,
    ("GET", "/api/v1/campaigns/{campaign_id}/ended"): PEOPLE,
    ("GET", "/api/v1/campaigns/{campaign_id}/failures"): PEOPLE,
    ("GET", "/api/v1/campaigns/{campaign_id}/timeline"): PEOPLE,
    ("GET", "/api/v1/campaigns/{campaign_id}/runtimes"): PEOPLE,
    ("POST", "/api/v1/bundles"): PEOPLE,
    ("GET", "/api/v1/backup"): ADMIN,
    # Autoscalers use a submitter or admin token; agent tokens neither read nor write.
    ("GET", "/api/v1/allocations"): PEOPLE,
    ("GET", "/api/v1/allocations/backlog"): PEOPLE,
    ("POST", "/api/v1/allocations"): PEOPLE,
    ("PATCH", "/api/v1/allocations/{allocation_id}"): PEOPLE,
    ("POST", "/api/v1/allocations/autoscalers/{name}/acquire"): PEOPLE,
    ("POST", "/api/v1/allocations/autoscalers/{name}/renew"): PEOPLE,
    ("POST", "/api/v1/allocations/autoscalers/{name}/release"): PEOPLE,
}

PAGES = {**dict.fromkeys(ROLES, LOGIN), "agent": "403", "other_agent": "403"}
PAGES.update(submitter=OK, admin=OK)
#: GET path template → expected class per caller, logged in with a session cookie.
PAGE_MATRIX: dict[str, dict[str, str]] = {
    "/": PAGES,
    "/campaigns/{campaign_id}": PAGES,
    "/campaigns/{campaign_id}/results.csv": PAGES,
    "/campaigns/{campaign_id}/failures": PAGES,
    "/records/{record_id}": PAGES,
    "/records/{record_id}/runs/{run_id}/{kind}": PAGES,
    "/login": PUBLIC,
    "/docs": PUBLIC,
    "/redoc": PUBLIC,
    "/metrics": PUBLIC,
    "/openapi.json": PUBLIC,
}

#: POST path template → its form (beyond the CSRF token) and the expected class per caller,
#: logged in with a session cookie and sending that session's own CSRF token: what a page
#: lets each role do, whatever the token check alone would allow.
PAGE_POSTS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "/records/{spare_record}/cancel": ({}, PAGES),
    "/records/{spare_record}/retry": ({}, PAGES),
    "/campaigns/{campaign_id}/failures/retry": ({"signature": "x"}, PAGES),
    "/campaigns/{campaign_id}/bulk": ({"action": "cancel", "key": "spare"}, PAGES),
    "/campaigns/{campaign_id}/bulk/confirm": (
        {"action": "retry", "key": "spare", "through": "0", "expected": "0"},
        PAGES,
    ),
    "/logout": ({}, {**PAGES, "agent": OK, "other_agent": OK}),  # an agent's session may end
    "/login": ({"token": "fh_wrong", "next": "/"}, dict.fromkeys(ROLES, OK)),
}

#: Run first (they change nothing), then the rest; these last, in this order: they end
#: agent A's lease, which is what lets its token read the lease's snapshots.
ENDING = (
    "/api/v1/runs/starts",
    "/api/v1/runs/reports",
    "/api/v1/runs/{run_id}/start",
    "/api/v1/runs/{run_id}/complete",
    "/api/v1/runs/{run_id}/fail",
    "/api/v1/runs/{run_id}/orphan",
    "/api/v1/runs/{run_id}/release",
    "/api/v1/agents/{agent_id}/drain",
    "/api/v1/agents/{agent_id}/stop",
)


@dataclass
class World:
    """What the requests point at, and each caller's bearer secret."""

    secrets: dict[str, str | None]
    ids: dict[str, Any]
    lease: dict[str, Any]
    upload: bytes
    bodies: dict[tuple[str, str], Any] = field(default_factory=dict)


def _ok(r: httpx.Response, *codes: int) -> Any:
    assert r.status_code in (codes or (200, 201)), r.text
    return r.json() if r.content else None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_world(api: TestClient) -> World:
    """Tokens, burnt ids, a done parent with an archive, agent A leasing its child (input and
    checkpoint attached), agent B leasing another record, a spare ready record."""
    made = {
        role: _ok(api.post(f"{API}/tokens", json={"role": r, "name": role}))
        for role, r in (
            ("agent", "agent"),
            ("other_agent", "agent"),
            ("submitter", "submitter"),
            ("spare", "submitter"),
        )
    }
    as_ = {role: TestClient(api.app, headers=bearer(m["token"])) for role, m in made.items()}
    # Burn ids so that no two tables hand out the same ones.
    register = {"name": "burner", "host": "h", "slots": 1}
    burners = [_ok(api.post(f"{API}/agents", json=register))["agent"]["id"] for _ in range(5)]
    spare = [_ok(api.post(f"{API}/campaigns", json={"name": f"spare{i}"}))["id"] for i in range(10)]
    burn = [{"key": f"burn{i}", "command": "true"} for i in range(20)]
    _ok(api.post(f"{API}/records", json={"campaign_id": spare[0], "records": burn}))
    for _ in range(2):  # 40 runs for 20 records
        claim = {"agent_id": burners[-1], "max_records": 20, "campaign_id": spare[0]}
        assert len(_ok(api.post(f"{API}/leases", json=claim))["leases"]) == 20
        _ok(api.post(f"{API}/agents/{burners[-1]}/stop"))
        burners.append(_ok(api.post(f"{API}/agents", json=register))["agent"]["id"])

    world = _ok(api.post(f"{API}/campaigns", json={"name": "world"}))["id"]
    given, archive = b"an input", b"the parent's archive"
    for data in (given, archive):
        _ok(api.put(f"{API}/snapshots/{_sha(data)}", content=data), 201)
    records = [
        {"key": "parent", "command": "true", "priority": 20},
        {
            "key": "child",
            "command": "true",
            "priority": 10,
            "parents": ["parent"],
            "inputs": {"in.txt": _sha(given)},
        },
        {"key": "b-work", "command": "true", "priority": 5},
        {"key": "spare", "command": "true", "priority": -1},
    ]
    _ok(api.post(f"{API}/records", json={"campaign_id": world, "records": records}), 201)
    claim = {"agent_id": burners[-1], "campaign_id": world}
    (parent,) = _ok(api.post(f"{API}/leases", json=claim))["leases"]
    done = {"token": parent["token"], "result": {}, "archive": _sha(archive)}
    _ok(api.post(f"{API}/runs/{parent['run_id']}/complete", json=done))

    agents, leases = {}, {}
    for role in ("agent", "other_agent"):
        answer = _ok(as_[role].post(f"{API}/agents", json={**register, "name": role}), 201)
        agents[role] = answer["agent"]["id"]
        claim = {"agent_id": agents[role], "campaign_id": world}
        (leases[role],) = _ok(as_[role].post(f"{API}/leases", json=claim))["leases"]
    lease = leases["agent"]
    assert lease["key"] == "child" and lease["inputs"] == {"in.txt": _sha(given)}
    mark = b"a checkpoint"
    held = {LEASE_HEADER: f"{lease['run_id']}:{lease['token']}"}
    _ok(as_["agent"].put(f"{API}/snapshots/{_sha(mark)}", content=mark, headers=held), 201)
    body = {"token": lease["token"], "sha256": _sha(mark)}
    _ok(as_["agent"].post(f"{API}/runs/{lease['run_id']}/checkpoints", json=body), 201)
    spare_record = next(
        r["id"]
        for r in _ok(api.get(f"{API}/records", params={"campaign_id": world}))["items"]
        if r["key"] == "spare"
    )

    ids = {
        "campaign_id": world,
        "record_id": lease["record_id"],
        "agent_id": agents["agent"],
        "run_id": lease["run_id"],
        "sha256": _sha(given),
        "token_id": made["spare"]["id"],
        "parent_record": parent["record_id"],
        "parent_run": parent["run_id"],
        "spare_record": spare_record,
        "empty_campaign": spare[1],
    }
    distinct = [
        world,
        lease["record_id"],
        lease["run_id"],
        parent["record_id"],
        parent["run_id"],
        *agents.values(),
        leases["other_agent"]["run_id"],
        *(made[role]["id"] for role in ("agent", "other_agent", "spare")),
    ]
    assert len(set(distinct)) == len(distinct), distinct
    return World(
        secrets={
            "none": None,
            "wrong": "fh_" + secrets.token_urlsafe(32),
            "agent": made["agent"]["token"],
            "other_agent": made["other_agent"]["token"],
            "submitter": made["submitter"]["token"],
            "admin": api.headers["Authorization"].removeprefix("Bearer "),
        },
        ids=ids,
        lease=lease,
        upload=b"uploaded by the role matrix",
    )


def bearer(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def request_for(world: World, method: str, template: str) -> dict[str, Any]:
    """The path, body and headers of one operation, pointing into the world."""
    ids, lease = world.ids, world.lease
    fenced = {"token": lease["token"]}
    bodies: dict[str, Any] = {
        "/api/v1/campaigns": {"name": "made-by-matrix"},
        "/api/v1/tokens": {"role": "submitter", "name": "made-by-matrix"},
        "/api/v1/records": {
            "campaign_id": ids["campaign_id"],
            "records": [{"key": "made-by-matrix", "command": "true"}],
        },
        "/api/v1/records/count": {"campaign_id": ids["campaign_id"], "key_prefix": "sp"},
        "/api/v1/records/cancel": {"ids": [ids["spare_record"]]},
        "/api/v1/records/retry": {"ids": [ids["spare_record"]]},
        "/api/v1/agents": {"name": "made-by-matrix", "host": "h", "slots": 1},
        "/api/v1/agents/{agent_id}/heartbeat": {"run_ids": [lease["run_id"]]},
        "/api/v1/leases": {"agent_id": ids["agent_id"], "campaign_id": ids["empty_campaign"]},
        "/api/v1/runs/reports": {
            "reports": [{"run_id": lease["run_id"], "token": lease["token"], "error": "x"}]
        },
        "/api/v1/runs/starts": {"starts": [{"run_id": lease["run_id"], "token": lease["token"]}]},
        "/api/v1/runs/{run_id}/start": fenced,
        "/api/v1/runs/{run_id}/complete": {**fenced, "result": {}},
        "/api/v1/runs/{run_id}/fail": {**fenced, "error": "x"},
        "/api/v1/runs/{run_id}/orphan": {**fenced, "reason": "x"},
        "/api/v1/runs/{run_id}/release": fenced,
        "/api/v1/runs/{run_id}/checkpoints": {**fenced, "sha256": ids["sha256"]},
        "/api/v1/allocations/autoscalers/{name}/acquire": {"holder": "matrix", "ttl": 5},
        "/api/v1/allocations/autoscalers/{name}/renew": {"token": "not-live", "ttl": 5},
        "/api/v1/allocations/autoscalers/{name}/release": {"token": "not-live"},
        "/api/v1/allocations": {
            "autoscaler": "matrix",
            "token": "not-live",
            "scheduler": "slurm",
            "job_id": "1",
        },
        "/api/v1/allocations/{allocation_id}": {"token": "not-live", "state": "ended"},
        "/api/v1/bundles": {
            "campaign": {"name": "imported", "version": 1, "created_at": "2026-01-01T00:00:00Z"},
            "records": [],
        },
    }
    path = template.format(**ids, name="matrix", allocation_id=999)
    out: dict[str, Any] = {"json": bodies.get(template), "headers": {}}
    if template == "/api/v1/snapshots/{sha256}" and method == "PUT":
        path = template.format(sha256=_sha(world.upload))
        out["content"] = world.upload
        out["headers"] = {LEASE_HEADER: f"{lease['run_id']}:{lease['token']}"}
    if template == "/api/v1/snapshots/batch":
        part = {"sha256": _sha(world.upload), "size": len(world.upload)}
        header = json.dumps({"parts": [{**part, "lease": f"{lease['run_id']}:{lease['token']}"}]})
        out["json"], out["content"] = None, header.encode() + b"\n" + world.upload
    out["path"] = path
    return out


def answer_class(template: str, r: httpx.Response) -> str:
    """The class of an answer (see the module docstring)."""
    assert r.status_code < 500, r.text
    if r.status_code in (401, 403, 404):
        return str(r.status_code)
    if r.status_code == 303 and r.headers["location"].startswith("/login"):
        return LOGIN
    if template == "/api/v1/snapshots/batch" and r.status_code == 200:
        codes = {(a.get("error") or {}).get("code") for a in r.json()["parts"]}
        if codes == {"forbidden"}:
            return "403"  # the one part refused for the caller's token
    if template in ("/api/v1/runs/reports", "/api/v1/runs/starts") and r.status_code == 200:
        codes = {(a.get("error") or {}).get("code") for a in r.json()["answers"]}
        if codes == {"forbidden"}:
            return "403"  # every item refused for the caller's token
    return OK


def matches(expected: str, got: str) -> bool:
    # A 404 is "let through" for routes whose target may be gone by then; exact elsewhere.
    return got == expected or (expected == OK and got == "404")


def _order(key: tuple[str, str]) -> tuple[int, int, str]:
    method, template = key
    ending = ENDING.index(template) if template in ENDING else -1
    return (ending, 0 if method in ("GET", "HEAD") else 1, template)


def test_every_operation_answers_each_role_as_the_matrix_says(api: TestClient) -> None:
    operations = {
        (method.upper(), path)
        for path, ops in api.get("/openapi.json").json()["paths"].items()
        for method in ops
    }
    unclassified = operations - API_MATRIX.keys()
    assert not unclassified, f"classify these in API_MATRIX: {sorted(unclassified)}"
    assert not API_MATRIX.keys() - operations, "API_MATRIX names operations that are gone"
    world = build_world(api)
    anonymous = TestClient(api.app)
    wrong = []
    for method, template in sorted(operations, key=_order):
        spec = request_for(world, method, template)
        # Refused callers first: a refusal must change nothing the allowed ones then use.
        for role in sorted(ROLES, key=lambda role: API_MATRIX[method, template][role] == OK):
            expected = API_MATRIX[method, template][role]
            r = anonymous.request(
                method,
                spec["path"],
                json=spec["json"],
                content=spec.get("content"),
                headers={**spec["headers"], **bearer(world.secrets[role])},
            )
            got = answer_class(template, r)
            if not matches(expected, got):
                wrong.append(
                    f"{method} {template} as {role}: {got} ({r.status_code}), not {expected}"
                )
    assert not wrong, "\n".join(wrong)


def page_templates() -> set[str]:
    """Every GET page the server has: the pages' routers, and the app's own documents."""
    found = {
        route.path
        for router in (access.router, page_routes.router)
        for route in router.routes
        if "GET" in getattr(route, "methods", ())
    }
    return found | {"/docs", "/redoc", "/metrics", "/openapi.json"}


@pytest.mark.parametrize("by", ["cookie", "bearer"])
def test_every_page_answers_each_role_as_the_matrix_says(api: TestClient, by: str) -> None:
    """Pages take a session cookie; a bearer header alone never opens a page."""
    templates = page_templates()
    assert templates == PAGE_MATRIX.keys(), "classify every page in PAGE_MATRIX"
    world = build_world(api)
    ids = {
        **world.ids,
        "record_id": world.ids["parent_record"],
        "run_id": world.ids["parent_run"],
        "kind": "archive",
    }
    wrong = []
    for template in sorted(templates):
        for role in ROLES:
            client = TestClient(api.app, follow_redirects=False)
            secret = world.secrets[role]
            headers: dict[str, str] = {}
            if secret and by == "cookie":
                client.cookies.set(access.COOKIE, secret)
            elif secret:
                headers = bearer(secret)
            expected = PAGE_MATRIX[template][role]
            if by == "bearer" and PAGE_MATRIX[template] is PAGES:
                expected = LOGIN  # as if no one had logged in
            r = client.get(template.format(**ids), headers=headers)
            got = answer_class(template, r)
            if got != expected:
                wrong.append(
                    f"GET {template} by {by} as {role}: {got} ({r.status_code}), not {expected}"
                )
    assert not wrong, "\n".join(wrong)


def test_every_page_form_answers_each_role_as_the_matrix_says(api: TestClient) -> None:
    """Every POST the pages take, by each caller, with the caller's own CSRF token."""
    posts = {
        route.path
        for router in (access.router, page_routes.router, bulk.router)
        for route in router.routes
        if "POST" in getattr(route, "methods", ())
    }
    classified = {t.replace("{spare_record}", "{record_id}") for t in PAGE_POSTS}
    assert posts == classified, "classify every page form in PAGE_POSTS"
    world = build_world(api)
    wrong = []
    for template, (form, classes) in PAGE_POSTS.items():
        # Refused callers first: a refusal must change nothing the allowed ones then use.
        for role in sorted(ROLES, key=lambda role: classes[role] == OK):
            client = TestClient(api.app, follow_redirects=False)
            secret = world.secrets[role]
            if secret:
                client.cookies.set(access.COOKIE, secret)
            data = {**form, "csrf": access.csrf_token(secret or "")}
            r = client.post(template.format(**world.ids), data=data)
            got = answer_class(template, r)
            if got == "401" and template == "/login":
                got = OK  # the form again, saying the token is wrong: not the caller's refusal
            if template == "/logout" and r.headers.get("location") == "/login":
                got = OK  # logged out (a refused caller goes to /login?next=…)
            if not matches(classes[role], got):
                wrong.append(
                    f"POST {template} as {role}: {got} ({r.status_code}), not {classes[role]}"
                )
    assert not wrong, "\n".join(wrong)
