"""The overview's Allocations section: the live batch jobs autoscalers submitted, with the
agents that came from them, and what each autoscaler last said (records it could not fit)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.server.helpers import API
from tests.server.pages.test_pages import browser


def test_overview_lists_live_allocations_and_what_autoscalers_said(api: TestClient) -> None:
    client = browser(api)
    assert "No batch job pending or running" in client.get("/").text
    scalers = f"{API}/allocations/autoscalers/slurm:campaign=1"
    lease = api.post(f"{scalers}/acquire", json={"holder": "login1:7", "ttl": 60}).json()
    job = {
        "autoscaler": "slurm:campaign=1",
        "token": lease["token"],
        "scheduler": "slurm",
        "job_id": "4242",
        "submitted_for": {"records": 40, "cores": 2, "gpus": 0},
    }
    made = api.post(f"{API}/allocations", json=job).json()
    ended = api.post(f"{API}/allocations", json={**job, "job_id": "41"}).json()
    update = {"token": lease["token"], "state": "ended"}
    assert api.patch(f"{API}/allocations/{ended['id']}", json=update).status_code == 200
    agent = {"name": "n1-job4242", "host": "n1", "slots": 2, "labels": {"slurm_job": "4242"}}
    assert api.post(f"{API}/agents", json=agent).status_code == 201
    status = {
        "message": "40 ready record(s); 1 job(s) pending, 0 running",
        "unfit": [{"count": 3, "reason": "4 GPUs; a node has 0", "runner": "subprocess"}],
    }
    renew = {"token": lease["token"], "ttl": 60, "status": status}
    assert api.post(f"{scalers}/renew", json=renew).status_code == 200

    page = client.get("/")
    html = page.text
    table = re.search(r'<table id="allocations">(.*?)</table>', html, re.S)
    assert table, html
    rows = re.findall(r'<tr data-allocation="(\d+)">(.*?)</tr>', table.group(1), re.S)
    assert [int(i) for i, _ in rows] == [made["id"]]  # the ended job is not listed
    row = rows[0][1]
    assert "slurm 4242" in row and ">pending<" in row and "n1-job4242 (active)" in row
    assert "records=40, cores=2" in row
    said = re.search(r'<ul id="autoscalers">(.*?)</ul>', html, re.S)
    assert said and "40 ready record(s); 1 job(s) pending" in said.group(1)
    assert "not submitted for 3 ready records: 4 GPUs; a node has 0" in said.group(1)
    assert "<script>" not in html and "style=" not in html
    assert "script-src 'self'" in page.headers["content-security-policy"]
