"""Ids: never reused on either backend, and far apart between tables in every test database."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert

from farmhand.server.db import Database
from farmhand.server.tables import Campaign
from tests.conftest import LiveServer
from tests.server.helpers import API, agent, campaign, claim, submit
from tests.support.databases import ID_STARTS

CAMPAIGN = Campaign.__table__


def in_range(table: str, value: int) -> bool:
    """True if `value` lies in the ids `table` hands out in a test database."""
    above = [start for start in ID_STARTS.values() if start > ID_STARTS[table]]
    return ID_STARTS[table] <= value < min(above, default=2**62)


def test_an_id_is_never_handed_out_twice(db: Database) -> None:
    """SQLite's plain INTEGER PRIMARY KEY would give the newest row's id again once that row
    is gone (max(id) + 1); AUTOINCREMENT, like PostgreSQL's sequences, does not."""
    with db.write_core() as conn:
        (first,) = conn.execute(
            insert(CAMPAIGN).values(name="gone", version=1, defaults={}).returning(CAMPAIGN.c.id)
        ).one()
        conn.execute(delete(CAMPAIGN).where(CAMPAIGN.c.id == first))
    with db.write_core() as conn:
        (second,) = conn.execute(
            insert(CAMPAIGN).values(name="new", version=1, defaults={}).returning(CAMPAIGN.c.id)
        ).one()
    assert second > first


def ids_of_every_table(api: httpx.Client) -> dict[str, list[int]]:
    """Make a row in every table with an id, through the API; their ids by table."""
    made = api.post(f"{API}/tokens", json={"role": "submitter"})
    assert made.status_code == 201, made.text
    campaign_id = campaign(api)
    submit(api, campaign_id, "a", "b")
    agent_id = agent(api)
    leases = claim(api, agent_id, 2)
    data = b"a checkpoint"
    sha256 = hashlib.sha256(data).hexdigest()
    assert api.put(f"{API}/snapshots/{sha256}", content=data).status_code == 201
    body = {"token": leases[0]["token"], "sha256": sha256}
    saved = api.post(f"{API}/runs/{leases[0]['run_id']}/checkpoints", json=body)
    assert saved.status_code == 201, saved.text
    lease = api.post(
        f"{API}/allocations/autoscalers/ids/acquire", json={"holder": "test", "ttl": 60}
    )
    assert lease.status_code == 200, lease.text
    job = {"autoscaler": "ids", "token": lease.json()["token"], "scheduler": "slurm"}
    allocation = api.post(f"{API}/allocations", json={**job, "job_id": "17"})
    assert allocation.status_code == 201, allocation.text
    return {
        "campaign": [campaign_id],
        "token": [t["id"] for t in api.get(f"{API}/tokens").json()],
        "agent": [agent_id],
        "record": [lease["record_id"] for lease in leases],
        "run": [lease["run_id"] for lease in leases],
        "checkpoint": [saved.json()["id"]],
        "allocation": [allocation.json()["id"]],
    }


def check_apart(ids: dict[str, list[Any]]) -> None:
    assert set(ids) == set(ID_STARTS), "a table with ids is missing from ID_STARTS"
    for table, values in ids.items():
        assert values and all(in_range(table, v) for v in values), (table, values)


def test_each_table_numbers_its_ids_from_its_own_start_in_test_databases(
    api: TestClient,
) -> None:
    """The fixtures' databases start every table at its own offset (the admin token made at
    start included), so a query matching one table's id against another's finds nothing."""
    check_apart(ids_of_every_table(api))


def test_a_live_server_keeps_the_offsets_of_its_database(live_server: LiveServer) -> None:
    """The server migrates its database at start; a database already at head keeps them."""
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        check_apart(ids_of_every_table(http))
