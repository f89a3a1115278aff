"""Small builders for API tests (in-process app, real SQLite file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from farmhand.server.tables import SNAPSHOT_BYTES

API = "/api/v1"


def campaign(api: TestClient, name: str = "c", **defaults: Any) -> int:
    r = api.post(f"{API}/campaigns", json={"name": name, "defaults": defaults})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit(api: TestClient, campaign_id: int, *keys: str, **run_args: Any) -> None:
    records = [{"key": k, "command": f"echo {k}", "run_args": run_args} for k in keys]
    r = api.post(f"{API}/records", json={"campaign_id": campaign_id, "records": records})
    assert r.status_code == 201, r.text


def agent(api: TestClient, name: str = "a") -> int:
    r = api.post(f"{API}/agents", json={"name": name, "host": "h", "slots": 4})
    assert r.status_code == 201, r.text
    return r.json()["agent"]["id"]


def claim(api: TestClient, agent_id: int, n: int = 1) -> list[dict[str, Any]]:
    r = api.post(f"{API}/leases", json={"agent_id": agent_id, "max_records": n})
    assert r.status_code == 200, r.text
    return r.json()["leases"]


def record(api: TestClient, record_id: int) -> dict[str, Any]:
    r = api.get(f"{API}/records/{record_id}")
    assert r.status_code == 200, r.text
    return r.json()


def counts(api: TestClient, campaign_id: int) -> dict[str, int]:
    return {
        k: v for k, v in api.get(f"{API}/campaigns/{campaign_id}").json()["counts"].items() if v
    }


def ids_by_key(api: TestClient, campaign_id: int) -> dict[str, int]:
    """`{key: record id}` for the first 1000 records of the campaign."""
    r = api.get(f"{API}/records", params={"campaign_id": campaign_id, "limit": 1000})
    assert r.status_code == 200, r.text
    return {item["key"]: item["id"] for item in r.json()["items"]}


def blob_files(api: TestClient) -> list[Path]:
    """Every file in the app's blob store, staging area included."""
    root = api.app.state.blobs.root
    return sorted(p for p in root.rglob("*") if p.is_file())


def kept_in_database(api: TestClient) -> dict[str, bytes]:
    """The snapshots whose bytes the database holds (`snapshot_bytes`), by sha256."""
    with api.app.state.db.engine.connect() as conn:
        rows = conn.execute(select(SNAPSHOT_BYTES.c.sha256, SNAPSHOT_BYTES.c.data))
        return {sha: bytes(data) for sha, data in rows}
