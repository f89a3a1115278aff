"""A consistent backup of a running server, streamed as a tar: the SQLite database, then
every blob.

The database is copied with SQLite's online backup API into a temporary file: one step,
under one read transaction, so the copy holds exactly the transactions committed when it
began, while writers go on (WAL). Blobs are immutable and stored before the rows naming them
commit, so copying them *after* the database gives every blob a row of the copy names (and
perhaps a few newer ones, which are harmless). On PostgreSQL there is no such copy here:
`pg_dump` plus a copy of the blob store does it (docs/operations.md).

The tar is written by hand, member by member (header, bytes, padding), so a blob of any
size streams through in chunks and the server's memory stays flat.

Layout (what `farmhand restore` unpacks into a new data directory)::

    backup.json            what this is: format, version, when, how many blobs
    farmhand.db            the database
    admin.token            the data directory's bootstrap admin token, when it has one
    blobs/ab/cd/<sha256>   every blob, as the file store keeps them
    backup-end.json        last: how many blobs came (a cut-off backup lacks it)
"""

from __future__ import annotations

import json
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from farmhand.server.db import Database
from farmhand.server.errors import Conflict
from farmhand.server.storage.blobs import CHUNK, BlobStore

__all__ = ["BACKUP_FORMAT", "BLOCK", "sqlite_copy", "stream", "tar_member"]

BACKUP_FORMAT = "farmhand-backup"
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: a tar ends on a whole record


def sqlite_copy(db: Database, directory: Path) -> BinaryIO:
    """A consistent copy of the SQLite database, as an open file whose name is already
    unlinked (so nothing is left behind however the caller ends); 409 on PostgreSQL."""
    if not db.is_sqlite:
        raise Conflict(
            f"this server's database is {db.dialect}: back it up with pg_dump, and copy the "
            "blob store (docs/operations.md, Backups); `farmhand backup` copies SQLite only"
        )
    source_path = db.engine.url.database
    if not source_path or source_path == ":memory:":
        raise Conflict("an in-memory SQLite database cannot be backed up")
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="backup-", suffix=".db", dir=directory)
    os.close(fd)
    try:
        source = sqlite3.connect(source_path, timeout=30)
        try:
            target = sqlite3.connect(name)
            try:
                source.backup(target)  # pages=-1: all at once, one consistent read
                # One self-contained file: no -wal beside it.
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        finally:
            source.close()
        handle = open(name, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    finally:
        Path(name).unlink(missing_ok=True)
    return handle


def tar_member(name: str, size: int, chunks: Iterable[bytes], *, mtime: float) -> Iterator[bytes]:
    """One regular file in a tar stream: its header, its `size` bytes, the padding."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            raise OSError(f"{name} grew while it was being backed up")
        yield chunk
    if sent != size:
        raise OSError(f"{name} is {sent} bytes, not {size}, while it was being backed up")
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


def stream(
    database: BinaryIO, store: BlobStore, *, data_dir: Path, version: str
) -> Iterator[bytes]:
    """The backup tar, piece by piece: manifest, database copy, admin token, blobs. Closes
    `database` at the end (or when the client goes away)."""
    now = time.time()
    written = 0
    try:
        names = sorted(store.names())
        manifest = json.dumps(
            {
                "format": BACKUP_FORMAT,
                "version": 1,
                "farmhand": version,
                "created_at": now,
                "blobs": len(names),
            },
            indent=2,
        ).encode()
        pieces = [tar_member("backup.json", len(manifest), [manifest], mtime=now)]
        size = os.fstat(database.fileno()).st_size
        pieces.append(tar_member("farmhand.db", size, _file_chunks(database), mtime=now))
        token = data_dir / "admin.token"
        if token.is_file():
            secret = token.read_bytes()
            pieces.append(tar_member("admin.token", len(secret), [secret], mtime=now))
        for piece in pieces:
            for chunk in piece:
                written += len(chunk)
                yield chunk
        blobs = 0
        for sha256 in names:
            size = store.size(sha256)
            if size is None:  # deleted since listed (only a cleanup does that)
                continue
            name = f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"
            for chunk in tar_member(name, size, store.read(sha256), mtime=now):
                written += len(chunk)
                yield chunk
            blobs += 1
        tail = json.dumps({"blobs": blobs}).encode()
        for chunk in tar_member("backup-end.json", len(tail), [tail], mtime=now):
            written += len(chunk)
            yield chunk
        end = 2 * BLOCK
        end += (RECORD - (written + end) % RECORD) % RECORD
        yield b"\0" * end
    finally:
        database.close()
