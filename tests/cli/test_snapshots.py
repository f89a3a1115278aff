"""`farmhand ls snapshots`, `get snapshot` and `get archive` against the real app
(in-process; the routes are tested on both databases under tests/server)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from farmhand.cli import main as cli
from farmhand.cli import snapshots as cli_snapshots
from farmhand.cli.records import listing as cli_records
from farmhand.client import FarmhandClient
from farmhand.server.tables import Run
from tests.conftest import ADMIN
from tests.server.helpers import API, agent, campaign, claim, submit

Farmhand = Callable[..., tuple[int, str, str]]


@pytest.fixture
def farmhand(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> Farmhand:
    """`farmhand(*argv)` → (status, stdout, stderr), the client talking to the app."""
    client = FarmhandClient("http://testserver", ADMIN, transport=api._transport)
    for module in (cli_snapshots, cli_records):
        monkeypatch.setattr(module, "connect", lambda args: client)

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def upload(api: TestClient, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    assert api.put(f"{API}/snapshots/{sha}", content=data).status_code == 201
    return sha


def test_ls_and_get_snapshot(api: TestClient, farmhand: Farmhand, tmp_path: Path) -> None:
    small, big = upload(api, b"a"), upload(api, b"b" * 5000)
    status, out, _ = farmhand("ls", "snapshots", "--json")
    listed = json.loads(out)
    assert status == 0 and [s["sha256"] for s in listed] == sorted([small, big])
    assert {s["sha256"]: s["size"] for s in listed} == {small: 1, big: 5000}
    assert all(s["references"] == 0 for s in listed)
    status, out, _ = farmhand("ls", "snapshots")
    assert out.splitlines()[0].split() == ["SHA256", "SIZE", "CREATED_AT", "REFERENCES"]
    assert len(out.splitlines()) == 3
    status, out, _ = farmhand("get", "snapshot", big, "-o", str(tmp_path / "got"))
    assert status == 0 and (tmp_path / "got").read_bytes() == b"b" * 5000
    status, _, err = farmhand("get", "snapshot", "abc")
    assert status == 1 and "is not a snapshot name" in err
    status, _, err = farmhand("get", "snapshot", "0" * 64, "-o", str(tmp_path / "none"))
    assert status == 1 and "no snapshot 000" in err and not (tmp_path / "none").exists()


def test_get_archive_fetches_the_latest_attempt_that_has_one(
    api: TestClient, farmhand: Farmhand, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = upload(api, b"first archive"), upload(api, b"second archive")
    c = campaign(api, "arch", max_attempts=3, retry_delay=0)  # each retry claimable at once
    submit(api, c, "k")
    worker = agent(api)
    status, _, err = farmhand("get", "archive", "k", "--campaign", "arch")
    assert status == 1 and "record 'k' has no output archive yet (0 attempt(s), state ready)" in err
    runs = []
    for archive in (first, second, None):  # three failed attempts; the last left no archive
        (lease,) = claim(api, worker)
        body = {"token": lease["token"], "error": "boom"}
        assert api.post(f"{API}/runs/{lease['run_id']}/fail", json=body).is_success
        runs.append(lease["run_id"])
        with api.app.state.db.write() as session:
            session.execute(update(Run).where(Run.id == lease["run_id"]).values(archive=archive))
    status, out, _ = farmhand(
        "get", "archive", "k", "--campaign", "arch", "-o", str(tmp_path / "a")
    )
    assert status == 0 and (tmp_path / "a").read_bytes() == b"second archive"
    assert f"(run {runs[1]}, attempt 2)" in out
    record_id = api.get(f"{API}/records", params={"key": "k"}).json()["items"][0]["id"]
    status, out, _ = farmhand("get", "archive", str(record_id))
    assert status == 0 and (tmp_path / f"k-run{runs[1]}.tar.gz").read_bytes() == b"second archive"
