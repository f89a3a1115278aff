"""`python -m bench.inprocess`: CPU per claim+complete cycle with the app driven in-process.

The ASGI app is called directly (no sockets, no uvicorn, one client, one cycle at a time), so
the figure is the server's own CPU per record, steady even on a shared machine: the way to
compare two versions back to back. `--profile FILE` records the measured cycles with py-spy
(installed separately) in its raw format.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from farmhand.server.app import create_app
from farmhand.server.settings import Settings
from tests.support.databases import PostgresDatabase, postgres_problem

TOKEN = "fh_bench_inprocess"
API = "/api/v1"


class Driver:
    """Calls the ASGI app the way uvicorn would, one request at a time."""

    def __init__(self, app: Any):
        self.app = app

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the decoded JSON answer (raises on a 3xx-5xx)."""
        raw = json.dumps(body).encode() if body is not None else b""
        headers = [
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        messages = [{"type": "http.request", "body": raw, "more_body": False}]
        status, chunks = 0, []

        async def receive() -> dict:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client never disconnects
            return {}

        async def send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        data = b"".join(chunks)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None


async def measure(app: Any, batch: int, cycles: int, profile: str | None) -> float:
    """CPU µs per record over `cycles` claim+report cycles of `batch` records."""
    driver = Driver(app)
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    life = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    campaign = (await driver.call("POST", API + "/campaigns", {"name": "inprocess"}))["id"]
    total = batch * (cycles + 50)
    for start in range(0, total, 10_000):
        keys = range(start, min(total, start + 10_000))
        records = [{"key": f"k{i}", "command": "true"} for i in keys]
        await driver.call("POST", API + "/records", {"campaign_id": campaign, "records": records})
    agent = {"name": "inprocess", "host": "h", "slots": batch}
    me = (await driver.call("POST", API + "/agents", agent))["agent"]["id"]

    async def cycle() -> None:
        claim = {"agent_id": me, "max_records": batch}
        leases = (await driver.call("POST", API + "/leases", claim))["leases"]
        if batch == 1:
            (lease,) = leases
            path = f"{API}/runs/{lease['run_id']}/complete"
            await driver.call("POST", path, {"token": lease["token"]})
        else:
            reports = [{"run_id": x["run_id"], "token": x["token"]} for x in leases]
            await driver.call("POST", API + "/runs/reports", {"reports": reports})

    for _ in range(30):  # warm the caches
        await cycle()
    spy = None
    if profile:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [py_spy, "record", "--gil", "-r", "1000", "-f", "raw", "-o", profile]
        spy = subprocess.Popen([*argv, "--pid", str(os.getpid())], stdout=subprocess.DEVNULL)
        time.sleep(1.5)  # py-spy attaches
    began = time.process_time()
    for _ in range(cycles):
        await cycle()
    used = time.process_time() - began
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait()
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await life
    return used / (cycles * batch) * 1e6


def main() -> int:
    """Measure and print CPU µs per record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--profile", help="py-spy raw output file")
    args = parser.parse_args()
    made = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "sqlite":
            url = f"sqlite:///{tmp}/inprocess.db"
        elif postgres_problem():
            print(f"PostgreSQL: {postgres_problem()}")
            return 1
        else:
            made = PostgresDatabase()
            url = made.url
        try:
            settings = Settings(data_dir=f"{tmp}/data", database_url=url, admin_token=TOKEN)
            app = create_app(settings)
            per_record = asyncio.run(measure(app, args.batch, args.cycles, args.profile))
        finally:
            if made is not None:
                made.drop()
    print(f"{args.backend}, batches of {args.batch}: {per_record:,.0f} µs CPU per record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
