"""Bundle tar files: what `farmhand export` writes and `farmhand import` reads.

Layout (an uncompressed tar; snapshots are mostly compressed already)::

    bundle.json          format, version, when, from where, the campaign, counts, snapshots
    records.jsonl        one `wire.BundleRecord` per line, in the server's id order
    snapshots/<sha256>   every snapshot the records reference (inputs, archives, checkpoints)

Reading never extracts anything to disk but the snapshots, each into a temporary file of
our own naming, verified by its hash when it is uploaded; any other member is ignored.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from farmhand import wire
from farmhand.client import FarmhandClient

__all__ = [
    "BundleError",
    "BundleReader",
    "Exported",
    "chunks",
    "parents_first",
    "write_bundle",
]

MANIFEST = "bundle.json"
RECORDS = "records.jsonl"
SNAPSHOTS = "snapshots/"
#: An import request stays well under the server's default 64 MiB body limit.
MAX_CHUNK_BYTES = 16 * 1024 * 1024
#: The largest manifest and record line read: a record must fit one request under the
#: server's default body limit, and a gzip bomb must not fill the memory first.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: What reading a damaged archive raises: a truncated gzip stream (EOFError), bad deflate
#: data (zlib.error), a bad tar header (TarError), a bad gzip header (OSError).
_DAMAGED = (EOFError, zlib.error, tarfile.TarError, OSError)


class BundleError(ValueError):
    """The file is not a bundle this farmhand can read; the message says why."""


@dataclass
class Exported:
    """What `write_bundle` wrote."""

    campaign: wire.BundleCampaign
    records: int
    snapshots: int
    bytes: int


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(time.time()), 0o644
    return info


def write_bundle(client: FarmhandClient, campaign_id: int, dest: Path) -> Exported:
    """Export campaign `campaign_id` into the tar `dest` (written beside it, renamed into
    place when whole)."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=dest.parent) as scratch:
        lines = Path(scratch) / RECORDS
        wanted: set[str] = set()
        count = 0
        campaign = None
        with open(lines, "w", encoding="utf-8") as out:
            for page in client.bundle_pages(campaign_id):
                campaign = page.campaign
                for record in page.records:
                    out.write(record.model_dump_json() + "\n")
                    wanted |= record.snapshots()
                    count += 1
        assert campaign is not None
        manifest = {
            "format": wire.BUNDLE_FORMAT,
            "version": wire.BUNDLE_VERSION,
            "exported_at": time.time(),
            "server": client.server,
            "campaign": campaign.model_dump(mode="json"),
            "records": count,
            "snapshots": sorted(wanted),
        }
        partial = Path(scratch) / "bundle.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=2).encode()
            tar.addfile(_member(MANIFEST, len(data)), io.BytesIO(data))
            with open(lines, "rb") as handle:
                tar.addfile(_member(RECORDS, lines.stat().st_size), handle)
            blob = Path(scratch) / "blob"
            for sha in sorted(wanted):  # one at a time: the scratch holds one blob at most
                client.download_snapshot(sha, blob)
                with open(blob, "rb") as handle:
                    tar.addfile(_member(SNAPSHOTS + sha, blob.stat().st_size), handle)
                blob.unlink()
        os.replace(partial, dest)
    return Exported(campaign, count, len(wanted), dest.stat().st_size)


@dataclass
class _Line:
    key: str
    parents: list[str]
    offset: int
    length: int


@dataclass
class BundleReader:
    """An open bundle: its manifest, its records (read on demand), its snapshots."""

    tar: tarfile.TarFile
    path: Path
    campaign: wire.BundleCampaign
    snapshots: list[str]
    lines: list[_Line] = field(default_factory=list)
    _records: IO[bytes] | None = None

    @classmethod
    @contextmanager
    def open(cls, path: Path) -> Iterator[BundleReader]:
        """Open and check a bundle; BundleError naming the problem when it is not one."""
        try:
            tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
        except _DAMAGED as exc:
            raise BundleError(f"{path} is not a readable tar file: {exc}") from exc
        with tar:
            try:
                reader = cls._read(tar, Path(path))
            except _DAMAGED as exc:
                raise BundleError(f"{path} is truncated or damaged: {exc}") from exc
            yield reader

    @classmethod
    def _read(cls, tar: tarfile.TarFile, path: Path) -> BundleReader:
        """Check the manifest and index the records (reading every member header)."""
        tar.getmembers()  # every header: a truncated archive fails here, before any import
        manifest = cls._json(tar, path, MANIFEST)
        if manifest.get("format") != wire.BUNDLE_FORMAT:
            raise BundleError(f"{path} is not a farmhand bundle (no {MANIFEST} of ours)")
        if manifest.get("version") != wire.BUNDLE_VERSION:
            raise BundleError(
                f"{path} is bundle version {manifest.get('version')}; this farmhand reads "
                f"version {wire.BUNDLE_VERSION}"
            )
        try:
            campaign = wire.BundleCampaign.model_validate(manifest.get("campaign"))
        except ValidationError as exc:
            raise BundleError(f"{path}: {MANIFEST} has no valid campaign: {one_line(exc)}") from exc
        snapshots = manifest.get("snapshots") or []
        if not isinstance(snapshots, list) or not all(
            isinstance(s, str) and re.match(wire.SHA256_PATTERN, s) for s in snapshots
        ):
            raise BundleError(f"{path}: {MANIFEST} lists snapshots that are not sha256s")
        reader = cls(tar=tar, path=Path(path), campaign=campaign, snapshots=snapshots)
        reader._index()
        return reader

    @staticmethod
    def _file(tar: tarfile.TarFile, path: Path, name: str) -> IO[bytes]:
        try:
            member = tar.getmember(name)
        except KeyError:
            raise BundleError(f"{path} has no {name}: not a farmhand bundle") from None
        handle = tar.extractfile(member) if member.isreg() else None
        if handle is None:
            raise BundleError(f"{path}: {name} is not a regular file")
        return handle

    @classmethod
    def _json(cls, tar: tarfile.TarFile, path: Path, name: str) -> dict[str, Any]:
        handle = cls._file(tar, path, name)
        if tar.getmember(name).size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: {name} is over {MAX_MANIFEST_BYTES} bytes")
        try:
            data = json.loads(handle.read())
        except ValueError as exc:
            raise BundleError(f"{path}: {name} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BundleError(f"{path}: {name} is not a JSON object")
        return data

    def _index(self) -> None:
        """Note each record's key, parents and place, so records can be sent parents first
        without holding them all in memory."""
        self._records = self._file(self.tar, self.path, RECORDS)
        offset = 0
        number = 0
        while line := self._records.readline(MAX_RECORD_BYTES + 1):
            number += 1
            if len(line) > MAX_RECORD_BYTES:
                raise BundleError(
                    f"{self.path}: {RECORDS} line {number} is over {MAX_RECORD_BYTES} bytes"
                )
            if line.strip():
                try:
                    head = json.loads(line)
                    key, parents = head["key"], head.get("parents") or []
                except (ValueError, KeyError, TypeError) as exc:
                    raise BundleError(
                        f"{self.path}: {RECORDS} line {number} is not a record"
                    ) from exc
                self.lines.append(_Line(str(key), [str(p) for p in parents], offset, len(line)))
            offset += len(line)

    def record(self, line: _Line) -> wire.BundleRecord:
        """The record at `line`, validated."""
        assert self._records is not None
        try:
            self._records.seek(line.offset)
            raw = self._records.read(line.length)
        except _DAMAGED as exc:
            raise BundleError(f"{self.path} is truncated or damaged: {exc}") from exc
        try:
            return wire.BundleRecord.model_validate_json(raw)
        except ValidationError as exc:
            problem = one_line(exc)
            raise BundleError(f"{self.path}: record '{line.key}' is not valid: {problem}") from exc

    def extract_snapshot(self, sha256: str, dest: Path) -> Path | None:
        """Write snapshot `sha256` from the bundle into file `dest`; None if it has none."""
        try:
            member = self.tar.getmember(SNAPSHOTS + sha256)
        except KeyError:
            return None
        source = self.tar.extractfile(member) if member.isreg() else None
        if source is None:
            return None
        with open(dest, "wb") as out:
            while chunk := source.read(1024 * 1024):
                out.write(chunk)
        return dest


def one_line(exc: ValidationError) -> str:
    """A validation error as one line: where and what, for each problem (the first three)."""
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors()[:3]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def parents_first(lines: list[_Line]) -> list[_Line]:
    """The lines reordered so that each record comes after its parents in the bundle (a
    cycle is left as found: the server refuses it, naming the keys)."""
    by_key = {line.key: line for line in lines}
    placed: set[str] = set()
    out: list[_Line] = []
    for line in lines:
        stack = [(line, iter(line.parents))]
        entered = {line.key}
        while stack:
            current, parents = stack[-1]
            parent = next(
                (p for p in parents if p in by_key and p not in placed and p not in entered), None
            )
            if parent is not None:
                entered.add(parent)
                stack.append((by_key[parent], iter(by_key[parent].parents)))
                continue
            stack.pop()
            if current.key not in placed:
                placed.add(current.key)
                out.append(current)
    return out


def chunks(lines: list[_Line]) -> Iterator[list[_Line]]:
    """Consecutive runs of lines small enough for one import request."""
    chunk: list[_Line] = []
    size = 0
    for line in lines:
        if chunk and (
            len(chunk) >= wire.MAX_BUNDLE_RECORDS or size + line.length > MAX_CHUNK_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += line.length
    if chunk:
        yield chunk
