"""The whole HTTP API, generated from its own OpenAPI document by schemathesis and sent to a
real server process: no answer is a 5xx, every status code is one the operation documents,
and every body matches the documented schema.

SQLite only, on purpose: this explores the HTTP surface (validation, error mapping, response
models), which is the same code on both backends, and one pass is already the largest
single test on a 2-core machine. What differs by backend (PostgreSQL's 32-bit INTEGER
columns, its refusal of NUL characters) is pinned on both backends by
tests/server/routes/test_bad_input_values.py and test_bad_input_documents.py.

Bounded and repeatable: `derandomize` fixes the examples, MAX_EXAMPLES caps each operation
(35 operations, 45-80 s in all on a shared 2-core machine; 100 examples found nothing more).
The admin token reaches every operation (agent routes take admin tokens too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from farmhand.cli.demo import free_port
from farmhand.server.app import create_app
from farmhand.server.settings import Settings
from tests.conftest import ADMIN

MAX_EXAMPLES = 50
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on SQLite with a little of everything, so generated ids hit rows."""
    data = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    env["FARMHAND_ADMIN_TOKEN"] = ADMIN
    cmd = [sys.executable, "-m", "farmhand", "server", "--port", str(port)]
    cmd += ["--data-dir", str(data), "--log-level", "warning"]
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=f"{url}/api/v1", headers=AUTH, timeout=30) as client:
            _seed(client, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def _seed(client: httpx.Client, process: subprocess.Popen) -> None:
    for _ in range(300):
        try:
            if client.get("/campaigns").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, "the server exited"
        import time

        time.sleep(0.1)
    c = client.post("/campaigns", json={"name": "c", "defaults": {"walltime": "1h"}}).json()
    records = [{"key": f"k{i}", "command": "true", "tags": ["t"]} for i in range(3)]
    client.post("/records", json={"campaign_id": c["id"], "records": records})
    agent = client.post("/agents", json={"name": "a", "host": "h", "slots": 2}).json()
    client.post("/leases", json={"agent_id": agent["agent"]["id"], "max_records": 2})


def _document() -> dict:
    """The OpenAPI document, as the server serves it at /openapi.json (building the app
    opens nothing: the database and blob store open when it starts)."""
    settings = Settings(data_dir=Path("unused"), admin_token=ADMIN)
    return create_app(settings).openapi()


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows its example
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_every_request_as_documented(case: schemathesis.Case, farm: str) -> None:
    if isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = 0  # a claim's long poll would spend the budget waiting
    case.call_and_validate(base_url=farm, headers=AUTH, checks=CHECKS, timeout=30)
