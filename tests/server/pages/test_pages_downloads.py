"""The record page's archive and checkpoint downloads: links, streamed bytes, refusals."""

from __future__ import annotations

import hashlib
import re

from fastapi.testclient import TestClient

from tests.server.helpers import API, agent, campaign, claim, submit
from tests.server.pages.test_pages import browser


def upload(api: TestClient, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    r = api.put(f"{API}/snapshots/{sha256}", content=data)
    assert r.status_code == 201, r.text
    return sha256


def test_a_runs_archive_and_checkpoint_download_from_its_record_page(
    placed: TestClient, where: str
) -> None:
    api = placed
    submit(api, campaign(api), "relax/Al 1")
    (lease,) = claim(api, agent(api))
    run, token = lease["run_id"], lease["token"]
    state = upload(api, b"checkpoint bytes")
    r = api.post(f"{API}/runs/{run}/checkpoints", json={"token": token, "sha256": state})
    assert r.status_code == 201, r.text
    archive_bytes = b"\x1f\x8b" + bytes(range(256)) * 40
    archive = upload(api, archive_bytes)
    done = {"token": token, "archive": archive}
    assert api.post(f"{API}/runs/{run}/complete", json=done).status_code == 200
    client = browser(api)
    page = client.get(f"/records/{lease['record_id']}").text
    row = re.search(rf'<tr data-run="{run}">(.*?)</tr>', page, re.S)
    assert row, page
    links = dict(
        re.findall(r'<a href="([^"]+)" download title="(\w+)">(?:archive|checkpoint)', row.group(1))
    )
    here = f"/records/{lease['record_id']}/runs/{run}"
    assert links == {f"{here}/archive": archive, f"{here}/checkpoint": state}
    got = client.get(f"{here}/archive")
    assert got.status_code == 200 and got.content == archive_bytes
    assert got.headers["content-length"] == str(len(archive_bytes))
    assert got.headers["content-type"] == "application/gzip"
    assert (
        got.headers["content-disposition"] == 'attachment; filename="relax_Al_1-attempt-1.tar.gz"'
    )
    got = client.get(f"{here}/checkpoint")
    assert got.status_code == 200 and got.content == b"checkpoint bytes"
    # Nothing else through this door: no such run, no such file, not logged in.
    assert client.get(f"/records/{lease['record_id']}/runs/999/archive").status_code == 404
    assert client.get(f"{here}/stdout").status_code == 422
    assert browser(api, None).get(f"{here}/archive").status_code == 303
    if where == "database":
        return
    api.app.state.blobs.path(archive).unlink()  # a blob store that lost it says so
    lost = client.get(f"{here}/archive")
    assert lost.status_code == 404 and "missing from the blob store" in lost.text


def test_a_run_without_files_has_no_links_and_its_download_is_404(api: TestClient) -> None:
    submit(api, campaign(api), "a")
    (lease,) = claim(api, agent(api))
    client = browser(api)
    page = client.get(f"/records/{lease['record_id']}").text
    assert "/archive" not in page and "/checkpoint" not in page
    missing = client.get(f"/records/{lease['record_id']}/runs/{lease['run_id']}/archive")
    assert missing.status_code == 404 and "has no run" in missing.text
