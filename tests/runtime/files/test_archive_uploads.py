"""Output archives through the outbox against a real server: small archives whose reports go
together travel in one request; a big one alone; a spoilt one is refused alone and its run
directory stays; a server without the batch route gets them one by one."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from farmhand import wire
from farmhand.runtime.files import archive_uploads
from farmhand.runtime.outbox import Outbox
from tests.runtime.test_outbox import Outcomes, running_leases

if TYPE_CHECKING:
    from tests.conftest import LiveServer

BATCH_ROUTE = f"{wire.API_PREFIX}/snapshots/batch"


def count_requests(client) -> Counter:
    """(method, path) of every request the client sends from now on, snapshot paths folded."""
    seen: Counter = Counter()

    def hook(request: httpx.Request) -> None:
        path = request.url.path
        if path.startswith(f"{wire.API_PREFIX}/snapshots/") and path != BATCH_ROUTE:
            path = f"{wire.API_PREFIX}/snapshots/{{sha256}}"
        seen[(request.method, path)] += 1

    client._http.event_hooks["request"].append(hook)
    return seen


def put_with_archive(outbox: Outbox, lease: wire.Lease, data: bytes, run_dir: Path) -> str:
    """A complete report whose archive (`data`) waits in the outbox; returns its sha256."""
    archive = outbox.archives / f"{lease.run_id}.tar.gz"
    archive.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    run_dir.mkdir(parents=True)
    body = wire.RunComplete(token=lease.token, result={"run": lease.run_id}, archive=sha256)
    outbox.put(
        lease.run_id, "complete", body, lease.key, archive_file=archive, remove_after=run_dir
    )
    return sha256


@pytest.mark.parametrize("backend", ["sqlite"])  # the server's side is tested on both databases
def test_archives_that_finish_together_travel_in_one_request(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    leases = running_leases(client, 7)
    outcomes = Outcomes()
    outbox = Outbox(tmp_path / "outbox", client, outcomes)
    outbox.open()
    datas = [f"archive of run {lease.run_id}\n".encode() * 50 for lease in leases]
    datas[5] = b"B" * (archive_uploads.SMALL + 1)  # too big for a batch: PUT alone
    shas = [
        put_with_archive(outbox, lease, data, tmp_path / "runs" / str(lease.run_id))
        for lease, data in zip(leases, datas, strict=True)
    ]
    # Run 6's archive is spoilt after its report named it (as a crash before the bytes
    # reached the disk would leave it): refused alone, its report goes without it.
    (outbox.archives / f"{leases[6].run_id}.tar.gz").write_bytes(b"half an archive")
    seen = count_requests(client)
    assert outbox.deliver_some() == 7
    assert seen == {
        ("POST", BATCH_ROUTE): 1,  # runs 0-4 and 6
        ("HEAD", f"{wire.API_PREFIX}/snapshots/{{sha256}}"): 1,  # run 5: over 1 MiB, so
        ("PUT", f"{wire.API_PREFIX}/snapshots/{{sha256}}"): 1,  # asked about, then sent
        ("POST", f"{wire.API_PREFIX}/runs/reports"): 1,
    }
    assert [state for _, _, state, _ in outcomes.seen] == ["done"] * 7
    for i, lease in enumerate(leases):
        run = client.record(lease.record_id).runs[-1]  # type: ignore[index]
        run_dir = tmp_path / "runs" / str(lease.run_id)
        if i == 6:
            assert run.archive is None and run_dir.is_dir()  # the outputs stay on the node
            assert not client.has_snapshot(shas[6])
        else:
            assert run.archive == shas[i] and not run_dir.exists()
            got = client.download_snapshot(shas[i], tmp_path / f"got-{i}")
            assert got.read_bytes() == datas[i]
    assert not list(outbox.archives.iterdir())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_batch_refused_whole_goes_one_by_one(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """A batch the server will not take as a whole (here: over the server's request body
    limit, which single snapshot uploads are not held to; an older server without the route
    answers 405 the same way) is sent again archive by archive."""
    server = live_server_factory(max_body_bytes=2000)
    client = server.client()
    leases = running_leases(client, 3)
    outbox = Outbox(tmp_path / "outbox", client, Outcomes())
    outbox.open()
    shas = [
        put_with_archive(outbox, lease, b"%d" % lease.run_id * 100, tmp_path / str(i))
        for i, lease in enumerate(leases)
    ]
    seen = count_requests(client)
    assert outbox.deliver_some() == 3
    assert seen[("POST", BATCH_ROUTE)] == 1  # 413: 1,800 bytes of archives and a header
    assert seen[("PUT", f"{wire.API_PREFIX}/snapshots/{{sha256}}")] == 3
    for lease, sha256 in zip(leases, shas, strict=True):
        assert client.record(lease.record_id).runs[-1].archive == sha256  # type: ignore[index]
