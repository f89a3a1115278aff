"""Snapshot transfers for `FarmhandClient`: ask, upload and download content-addressed files.

Uploads and downloads stream in chunks (a 2 GiB archive never sits in memory) and are
verified by their sha256: the server refuses an upload whose bytes do not match its name,
and a download is checked before it is moved into place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from farmhand import wire
from farmhand.client.errors import FarmhandError, ServerUnavailable, raise_for

if TYPE_CHECKING:
    from farmhand.client.api import FarmhandClient

__all__ = ["CHUNK", "HEAD_ABOVE", "LEASE_HEADER", "SnapshotCalls", "sha256_file"]

CHUNK = 1024 * 1024
LEASE_HEADER = wire.LEASE_HEADER
#: Files up to this size are PUT without a HEAD first: the server answers an upload of a
#: snapshot it already has at once without reading the body, so one round trip beats two.
HEAD_ABOVE = 1 << 20


def sha256_file(path: Path) -> str:
    """The lowercase hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _lease_headers(run_id: int | None, token: str | None) -> dict[str, str]:
    return {} if run_id is None or token is None else {LEASE_HEADER: f"{run_id}:{token}"}


class SnapshotCalls:
    """The snapshot half of `FarmhandClient` (mixed into it)."""

    def has_snapshot(
        self: FarmhandClient, sha256: str, *, run_id: int | None = None, token: str | None = None
    ) -> bool:
        """Whether the server holds snapshot `sha256` (`HEAD /snapshots/{sha256}`). An agent
        token learns it only for what its leases name, or when it names the live run
        (`run_id`, `token`) it is about to upload for; else the answer is False."""

        try:
            response = self._http.head(
                f"/snapshots/{sha256}", headers=_lease_headers(run_id, token)
            )
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self.server}: {exc}") from exc
        if response.status_code == 404:
            return False
        raise_for(response)
        return True

    def upload_snapshot(
        self: FarmhandClient,
        path: Path | bytes,
        *,
        sha256: str | None = None,
        run_id: int | None = None,
        token: str | None = None,
        skip_if_present: bool = True,
    ) -> str:
        """Upload a file (or bytes) as a snapshot and return its sha256; a snapshot the
        server already has is not sent again (files over `HEAD_ABOVE` bytes are asked about
        first, smaller ones are simply PUT). Agents name the live run (`run_id`, `token`) it
        belongs to."""

        if isinstance(path, bytes):
            content: bytes | Iterator[bytes] = path
            sha256 = sha256 or hashlib.sha256(path).hexdigest()
            size = len(path)
        else:
            path = Path(path)
            sha256 = sha256 or sha256_file(path)
            size = path.stat().st_size
            content = _chunks(path)
        if (
            skip_if_present
            and size > HEAD_ABOVE
            and self.has_snapshot(sha256, run_id=run_id, token=token)
        ):
            return sha256
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            **_lease_headers(run_id, token),
        }
        try:
            response = self._http.put(
                f"/snapshots/{sha256}", content=content, headers=headers, timeout=None
            )
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self.server}: {exc}") from exc
        raise_for(response)
        return sha256

    def upload_snapshots(
        self: FarmhandClient,
        files: Sequence[tuple[Path | bytes, wire.SnapshotPart]],
        *,
        timeout: float,
    ) -> list[wire.SnapshotPartStored]:
        """Upload several small files (or bytes) in one request (`POST /snapshots/batch`),
        each under its `SnapshotPart` (sha256, size, and for agents the run's `lease`); the
        answers are per part, in order: a refused part does not stop the others. At most
        `wire.MAX_BATCH_PARTS` files and `wire.MAX_BATCH_BYTES` bytes; a file whose size
        is not its part's raises ValueError before anything is sent."""

        batch = wire.SnapshotBatch(parts=[part for _, part in files])
        body = bytearray(batch.model_dump_json(exclude_none=True).encode())
        body += b"\n"
        for path, part in files:
            data = path if isinstance(path, bytes) else Path(path).read_bytes()
            if len(data) != part.size:
                raise ValueError(f"{path} has {len(data)} bytes, not the {part.size} announced")
            body += data
        headers = {"Content-Type": wire.BATCH_MEDIA_TYPE}
        try:
            response = self._http.post(
                "/snapshots/batch", content=bytes(body), headers=headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self.server}: {exc}") from exc
        raise_for(response)
        answer = wire.SnapshotBatchStored.model_validate_json(response.content)
        if len(answer.parts) != len(files):
            raise FarmhandError(f"{len(answer.parts)} answers for {len(files)} parts")
        return answer.parts

    def download_snapshot(self: FarmhandClient, sha256: str, dest: Path) -> Path:
        """Fetch snapshot `sha256` into file `dest` (streamed into a temporary file beside it,
        verified, then renamed into place). Returns `dest`."""

        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                try:
                    with self._http.stream("GET", f"/snapshots/{sha256}", timeout=None) as response:
                        if not response.is_success:
                            response.read()
                            raise_for(response)
                        for chunk in response.iter_bytes(CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                except httpx.TransportError as exc:
                    raise ServerUnavailable(f"cannot reach {self.server}: {exc}") from exc
            if digest.hexdigest() != sha256:
                raise FarmhandError(f"snapshot {sha256} arrived corrupted (sha256 mismatch)")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def snapshot_info(self: FarmhandClient, sha256: str) -> wire.Snapshot:
        """A snapshot's size, creation time and reference count."""
        return self._model(wire.Snapshot, "GET", f"/snapshots/{sha256}/info")

    def snapshots_page(
        self: FarmhandClient, *, after: str | None = None, limit: int = 100
    ) -> wire.SnapshotPage:
        """One page of snapshots in sha256 order; pass `next` as `after` for the next."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return self._model(wire.SnapshotPage, "GET", "/snapshots", params=params)

    def snapshots(self: FarmhandClient) -> Iterator[wire.Snapshot]:
        """Every snapshot, page by page."""
        after: str | None = None
        while True:
            page = self.snapshots_page(after=after, limit=1000)
            yield from page.items
            if page.next is None:
                return
            after = page.next

    def add_checkpoint(
        self: FarmhandClient, run_id: int, token: str, sha256: str
    ) -> wire.Checkpoint:
        """Attach an uploaded checkpoint to a live run (the next attempt restores it)."""
        body = wire.CheckpointCreate(token=token, sha256=sha256)
        return self._model(
            wire.Checkpoint, "POST", f"/runs/{run_id}/checkpoints", json=self._body(body)
        )
