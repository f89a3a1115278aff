"""Snapshots over a real server: the client's streamed transfers, and a big upload that
leaves the server's memory flat."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farmhand.client import FarmhandError
from farmhand.client.transfer import sha256_file
from farmhand.wire import API_PREFIX
from tests.conftest import LiveServer

BIG = 1024**3  # 1 GiB: far more than the server may buffer
BLOCK = os.urandom(1024 * 1024)


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_client_uploads_once_and_downloads_verified(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    source = tmp_path / "input.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    sha = sha256_file(source)
    assert not client.has_snapshot(sha)
    assert client.upload_snapshot(source) == sha
    assert client.has_snapshot(sha)
    assert client.upload_snapshot(source) == sha  # HEAD says it is there: nothing sent
    assert [s.sha256 for s in client.snapshots()] == [sha]
    assert client.snapshot_info(sha).size == source.stat().st_size
    fetched = client.download_snapshot(sha, tmp_path / "out" / "copy.bin")
    assert fetched.read_bytes() == source.read_bytes()
    assert [p.name for p in fetched.parent.iterdir()] == ["copy.bin"]  # no partial file left


def test_a_download_that_does_not_match_its_name_is_refused(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    source = tmp_path / "input.bin"
    source.write_bytes(b"original bytes" * 5000)  # over 64 KiB: a blob-store file
    sha = client.upload_snapshot(source)
    blob = live_server.data_dir / "blobs" / sha[:2] / sha[2:4] / sha
    blob.chmod(0o644)
    blob.write_bytes(b"tampered bytes" * 5000)  # same length, different bytes
    with pytest.raises(FarmhandError, match="corrupted"):
        client.download_snapshot(sha, tmp_path / "copy.bin")
    assert list(tmp_path.glob("copy.bin*")) == [] and list(tmp_path.glob(".part-*")) == []


def test_a_big_upload_streams_to_disk_without_growing_the_server(
    live_server_process: LiveServer,
) -> None:
    live_server = live_server_process  # its peak RSS is the server's alone
    digest = hashlib.sha256()
    for _ in range(BIG // len(BLOCK)):
        digest.update(BLOCK)
    sha = digest.hexdigest()

    def body() -> Iterator[bytes]:
        for _ in range(BIG // len(BLOCK)):
            yield BLOCK

    assert live_server.process is not None
    pid = live_server.process.pid
    before = peak_rss(pid)
    auth = {"Authorization": f"Bearer {live_server.admin_token}"}
    url = f"{live_server.url}{API_PREFIX}/snapshots/{sha}"
    response = httpx.put(
        url, content=body(), headers={**auth, "Content-Length": str(BIG)}, timeout=None
    )
    assert response.status_code == 201, response.text
    grown = peak_rss(pid) - before
    assert grown < 64 * 1024 * 1024, f"the server's peak memory grew {grown / 2**20:.0f} MiB"
    # And it comes back streamed, whole and in order.
    downloaded = hashlib.sha256()
    with httpx.stream("GET", url, headers=auth, timeout=None) as got:
        assert got.headers["content-length"] == str(BIG)
        for chunk in got.iter_bytes():
            downloaded.update(chunk)
    assert downloaded.hexdigest() == sha
    assert peak_rss(pid) - before < 64 * 1024 * 1024
