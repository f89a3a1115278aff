"""Request IDs (`X-Request-ID`) and `--log-format json`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from farmhand.cli.demo import free_port
from farmhand.server.serving import logs
from farmhand.server.settings import Settings
from tests.conftest import ADMIN
from tests.server.helpers import API

FARMHAND = [sys.executable, "-m", "farmhand"]


class Collected(logging.Handler):
    """Keeps formatted lines, with the request-id filter a configured server uses."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.addFilter(logs.RequestIdFilter())
        self.setFormatter(logs.JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_a_request_id_is_echoed_or_made(api: TestClient) -> None:
    given = api.get("/healthz", headers={"X-Request-ID": "trace-0af7651916cd43dd"})
    assert given.headers["x-request-id"] == "trace-0af7651916cd43dd"
    made = api.get("/healthz").headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    assert api.get("/healthz").headers["x-request-id"] != made
    # Something that could forge a log line or a header is replaced, not echoed.
    for forged in ("a b", "x" * 129, 'id"}{"level":"error'):
        echoed = api.get("/healthz", headers={"X-Request-ID": forged}).headers["x-request-id"]
        assert echoed != forged and len(echoed) == 32


def test_errors_carry_the_request_id_too(make_api) -> None:
    api = make_api(max_body_bytes=2048)
    headers = {"X-Request-ID": "req-1"}
    too_big = api.post(f"{API}/records", content=b"x" * 4096, headers=headers)
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "req-1"
    missing = api.get(f"{API}/records/999", headers=headers)
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "req-1"


def test_log_lines_written_during_a_request_name_it(api: TestClient) -> None:
    log = logging.getLogger("farmhand.server.test_logs")
    handler = Collected()
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    def work() -> dict[str, str]:  # a sync route: it runs on the thread pool
        log.info("working on %s", "it")
        return {}

    api.app.add_api_route("/_test/log", work)
    try:
        api.get("/_test/log", headers={"X-Request-ID": "req-42"})
        log.info("outside any request")
    finally:
        log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in handler.lines)
    assert inside["request_id"] == "req-42" and inside["message"] == "working on it"
    assert inside["level"] == "info" and inside["logger"] == "farmhand.server.test_logs"
    assert "request_id" not in outside


def test_json_lines_keep_exceptions_and_split_access_fields() -> None:
    formatter = logs.JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("farmhand", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "failed" and "ValueError: boom" in entry["exception"]
    access = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/healthz", "1.1", 200),
        None,
    )
    entry = json.loads(formatter.format(access))
    assert entry["message"] == '127.0.0.1:5000 - "GET /healthz HTTP/1.1" 200'
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/healthz", 200)


def test_text_lines_end_with_the_request_id() -> None:
    record = logging.LogRecord("farmhand", logging.INFO, __file__, 1, "hello", (), None)
    assert logs.TextFormatter().format(record).endswith("INFO    farmhand hello")
    record.request_id = "req-7"
    assert logs.TextFormatter().format(record).endswith("hello [request_id=req-7]")


def test_the_log_format_is_a_setting() -> None:
    assert Settings.from_env({"FARMHAND_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        Settings.from_env({"FARMHAND_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="log format must be one of text, json, not 'xml'"):
        logs.config("xml", "info")


def test_server_writes_json_lines_with_request_ids(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    env["FARMHAND_ADMIN_TOKEN"] = ADMIN
    log_path = tmp_path / "server.log"
    argv = [*FARMHAND, "server", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    argv += ["--log-format", "json", "--log-level", "debug"]  # debug: access lines too
    with log_path.open("wb") as out:
        server = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "probe-1"}, timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.1)
        assert r.headers["x-request-id"] == "probe-1"

        def access_line() -> dict | None:
            for line in log_path.read_text().splitlines():
                entry = json.loads(line)  # every line is JSON, startup lines included
                if entry.get("request_id") == "probe-1" and entry["logger"] == "uvicorn.access":
                    return entry
            return None

        deadline = time.monotonic() + 10
        while (entry := access_line()) is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert entry["path"] == "/healthz" and entry["status"] == 200
        startup = json.loads(log_path.read_text().splitlines()[0])
        assert startup["logger"] == "farmhand.server"
        assert startup["message"].startswith(f"farmhand server on http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)
