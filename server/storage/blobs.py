"""Where snapshot bytes live: a small interface, and the filesystem store behind it.

A blob is named by the sha256 of its bytes and never changes. Uploads are streamed into a
staging file first (`staging_file`), hashed on the way, and only a verified file is handed
to `put`, which makes it visible atomically: a reader sees a whole blob or none.

The filesystem store keeps `<root>/<ab>/<cd>/<sha256>` (sharded by hash prefix so no
directory grows huge) and stages under `<root>/tmp` on the same filesystem, so `put` is
fsync + rename. `s3_store.py` (FARMHAND_STORAGE_URL=s3://…) implements the same interface.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from farmhand.server.settings import Settings

__all__ = ["BlobStore", "FileStore", "blob_name_ok", "open_store"]

CHUNK = 1024 * 1024
#: Threads that issue a batch's fsyncs together (`FileStore.put_many`).
_SYNC_THREADS = 16


def blob_name_ok(sha256: str) -> bool:
    """Whether `sha256` is a lowercase hex sha256 (64 characters)."""
    return len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)


class BlobStore(Protocol):
    """What the server needs from a place that keeps blobs."""

    def staging_file(self) -> tuple[BinaryIO, Path]:
        """A new writable temporary file for an upload, and its path."""

    def put(self, sha256: str, staged: Path) -> None:
        """Make the verified staged file visible as blob `sha256` (consumes `staged`); a blob
        already there is kept and the staged file dropped."""

    def put_many(self, staged: list[tuple[str, Path]]) -> None:
        """`put` for each (sha256, staged file), made durable together where the store can
        (one batch upload's blobs)."""

    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes; None if there is no such blob."""

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The blob's bytes `start`..`end` (exclusive; None = to the end), in chunks."""

    def local_path(self, sha256: str) -> Path | None:
        """A local file holding the blob, when the store has one (lets backups copy it)."""

    def names(self) -> Iterator[str]:
        """Every blob's sha256 (any order)."""

    def delete(self, sha256: str) -> None:
        """Remove a blob; a missing one is fine."""


class FileStore:
    """Blobs as files under `root`, sharded `ab/cd/<sha256>`."""

    def __init__(self, root: Path, *, umask: int = 0o077):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.dir_mode = 0o777 & ~umask
        self.blob_mode = 0o444 & ~umask  # blobs never change: read-only
        self.root.mkdir(parents=True, exist_ok=True, mode=self.dir_mode)
        self.tmp.mkdir(exist_ok=True, mode=self.dir_mode)

    def path(self, sha256: str) -> Path:
        """Where blob `sha256` lives (whether or not it exists)."""
        if not blob_name_ok(sha256):
            raise ValueError(f"{sha256!r} is not a lowercase hex sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def staging_file(self) -> tuple[BinaryIO, Path]:
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.tmp)
        return os.fdopen(fd, "w+b"), Path(name)

    def put(self, sha256: str, staged: Path) -> None:
        target = self.path(sha256)
        if target.exists():
            staged.unlink(missing_ok=True)
            return
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        target.parent.parent.mkdir(exist_ok=True, mode=self.dir_mode)
        target.parent.mkdir(exist_ok=True, mode=self.dir_mode)
        os.chmod(staged, self.blob_mode)
        os.replace(staged, target)
        _fsync_dir(target.parent)

    def put_many(self, staged: list[tuple[str, Path]]) -> None:
        """`put` for each, with the fsyncs issued together: a file system that commits its
        journal for several waiting fsyncs at once (ext4, xfs) then pays about one commit for
        the batch instead of one per blob (each ~2 ms on this machine's disk)."""
        new = []
        for sha256, path in staged:
            target = self.path(sha256)
            if target.exists():
                path.unlink(missing_ok=True)
            else:
                new.append((target, path))
        if not new:
            return
        with ThreadPoolExecutor(max_workers=min(_SYNC_THREADS, len(new))) as pool:
            list(pool.map(_fsync_file, [path for _, path in new]))
            parents = set()
            for target, path in new:
                target.parent.parent.mkdir(exist_ok=True, mode=self.dir_mode)
                target.parent.mkdir(exist_ok=True, mode=self.dir_mode)
                os.chmod(path, self.blob_mode)
                os.replace(path, target)
                parents.add(target.parent)
            list(pool.map(_fsync_dir, parents))

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with open(self.path(sha256), "rb") as handle:
            handle.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = handle.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def local_path(self, sha256: str) -> Path | None:
        path = self.path(sha256)
        return path if path.exists() else None

    def names(self) -> Iterator[str]:
        for first in sorted(self.root.iterdir()):
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for blob in sorted(second.iterdir()):
                    if blob_name_ok(blob.name):
                        yield blob.name

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(
    storage_url: str | None, data_dir: Path, *, settings: Settings | None = None
) -> BlobStore:
    """The store for a `storage_url`: None or `file:///path` → FileStore (default
    `<data_dir>/blobs`); `s3://bucket/prefix` → the S3 store, reached through `settings`'
    s3_endpoint_url and s3_region, staging uploads in s3_staging_dir (default
    `<data_dir>/s3-staging`). A bucket that cannot be used raises StorageError."""
    umask = settings.umask if settings else 0o077
    if not storage_url:
        return FileStore(Path(data_dir) / "blobs", umask=umask)
    if storage_url.startswith("file://"):
        return FileStore(Path(storage_url.removeprefix("file://")), umask=umask)
    if storage_url.startswith("s3://"):
        from farmhand.server.storage.s3 import S3Store  # boto3 only where it is used

        return S3Store.from_url(
            storage_url,
            endpoint_url=settings.s3_endpoint_url if settings else None,
            region=settings.s3_region if settings else None,
            staging_dir=(settings and settings.s3_staging_dir) or Path(data_dir) / "s3-staging",
        )
    raise ValueError(f"storage_url {storage_url!r} must be file:///path or s3://bucket/prefix")
