"""A record's input files in its run directory, fetched once per agent.

Each snapshot is downloaded once into `<workdir>/cache/<sha256>` (streamed, verified by its
hash, renamed into place, made read-only) and placed at its relative path in each run
directory that names it: a hard link to the cached file where the filesystem allows, else a
copy. Inputs are read-only; a command that wants to change one replaces it (writes a new
file and renames it over the old), which leaves the cache alone. A cached file that changed
anyway (someone made it writable and wrote to it) is noticed by its size and mtime and
fetched again.

The cache is kept across runs and agents on the same work directory; a file an earlier
process left is hashed once before it is trusted. With a size limit (`--cache-limit`), each
download is followed by eviction of the least recently used files until the cache holds at
most that many bytes. Only bytes the cache alone holds count: a file still hard-linked into a
run directory frees nothing when evicted, so it is neither counted nor evicted. A file being
fetched, placed or unpacked right now is never evicted (its lock is held).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from itertools import count
from pathlib import Path

from farmhand import wire
from farmhand.client import FarmhandClient, FarmhandError, NotFound
from farmhand.client.retry import is_transient
from farmhand.client.transfer import sha256_file

__all__ = ["CACHE_DIR", "InputError", "SnapshotCache", "place_inputs"]

log = logging.getLogger("farmhand.agent")

CACHE_DIR = "cache"
_SHA256 = re.compile(wire.SHA256_PATTERN)
#: Tries for a download that arrives corrupted before the input counts as unusable.
CORRUPT_TRIES = 3


class InputError(Exception):
    """A snapshot this agent cannot stage: the server does not have it, it keeps arriving
    corrupted, or it cannot be written here. The record is orphaned with this message."""


class SnapshotCache:
    """Snapshots downloaded by this agent, each fetched once however many runs use it.
    Thread-safe: runs staging the same snapshot wait for one download. `limit` (bytes, None
    for no limit) bounds what the cache alone holds; see the module docstring."""

    def __init__(self, directory: Path, client: FarmhandClient, limit: int | None = None):
        self.directory = Path(directory)
        self.client = client
        self.limit = limit
        self.downloads = 0  #: snapshots fetched from the server by this process
        self.evicted = 0  #: cached files removed to keep under `limit`
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._known: dict[str, tuple[int, int]] = {}  # sha256 → (size, mtime_ns) when verified
        self._used: dict[str, int] = {}  # sha256 → when this process last used it (a counter)
        self._clock = count(1)

    def path(self, sha256: str) -> Path:
        """Where snapshot `sha256` is cached."""
        if not _SHA256.match(sha256):
            raise InputError(f"{sha256!r} is not a snapshot name (a lowercase hex sha256)")
        return self.directory / sha256

    def fetch(self, sha256: str) -> Path:
        """The cached file of snapshot `sha256`, downloaded if needed.

        Raises InputError (orphan the record), or ServerUnavailable / ApiError 5xx when the
        server cannot be asked now (retry later). With a limit, the file may be evicted once
        this returns; use `held()` to read or link it.
        """
        with self.held(sha256) as path:
            return path

    @contextmanager
    def held(self, sha256: str) -> Iterator[Path]:
        """The cached file of snapshot `sha256` (downloaded if needed), kept from eviction
        while the block runs. Raises what `fetch` raises."""
        path = self.path(sha256)
        with self._lock:
            lock = self._locks.setdefault(sha256, threading.Lock())
        with lock:
            downloaded = not self._still_good(sha256, path)
            if downloaded:
                self._download(sha256, path)
            self._used[sha256] = next(self._clock)
            yield path
        if downloaded:
            self.evict(keep=sha256)

    def _download(self, sha256: str, path: Path) -> None:
        for attempt in range(1, CORRUPT_TRIES + 1):
            try:
                self.client.download_snapshot(sha256, path)
                break
            except NotFound:
                raise InputError(f"snapshot {sha256} is not on the server") from None
            except OSError as exc:
                raise InputError(
                    f"snapshot {sha256} cannot be written to {self.directory}: "
                    f"{exc.strerror or exc}"
                ) from None
            except FarmhandError as exc:
                if is_transient(exc):
                    raise
                if attempt == CORRUPT_TRIES:
                    raise InputError(f"snapshot {sha256}: {exc}") from None
                log.warning("downloading snapshot %s again: %s", sha256, exc)
        self.downloads += 1
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        info = path.stat()
        self._known[sha256] = (info.st_size, info.st_mtime_ns)
        log.info("downloaded snapshot %s (%d bytes)", sha256, info.st_size)

    def evict(self, keep: str | None = None) -> int:
        """Remove least recently used files until the cache alone holds at most `limit`
        bytes; never `keep`, a file in use (locked) or one linked into a run directory.
        Returns the bytes freed. Files an earlier process left count as older than any
        this process used, oldest modification first."""
        if self.limit is None:
            return 0
        candidates, total = [], 0
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return 0
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not _SHA256.match(entry.name) or not stat.S_ISREG(info.st_mode):
                continue  # a download in progress, or something that is not ours
            if info.st_nlink > 1:
                continue  # a run directory links it: evicting it would free nothing
            total += info.st_size
            used = self._used.get(entry.name)
            age = (1, used) if used is not None else (0, info.st_mtime_ns)
            candidates.append((age, entry.name, info.st_size))
        freed = 0
        for _, name, size in sorted(candidates):
            if total - freed <= self.limit:
                break
            if name == keep:
                continue
            with self._lock:
                lock = self._locks.setdefault(name, threading.Lock())
            if not lock.acquire(blocking=False):
                continue  # being fetched, placed or unpacked right now
            try:
                (self.directory / name).unlink(missing_ok=True)
                self._known.pop(name, None)
                self._used.pop(name, None)
            finally:
                lock.release()
            freed += size
            self.evicted += 1
            log.info("evicted cached snapshot %s (%d bytes) to stay under the limit", name, size)
        return freed

    def _still_good(self, sha256: str, path: Path) -> bool:
        try:
            info = path.stat()
        except FileNotFoundError:
            return False
        seen = (info.st_size, info.st_mtime_ns)
        if self._known.get(sha256) == seen:
            return True
        if sha256 not in self._known and sha256_file(path) == sha256:  # an earlier process's
            self._known[sha256] = seen
            return True
        log.warning("cached snapshot %s changed; fetching it again", sha256)
        path.unlink(missing_ok=True)
        return False


def _place(source: Path, dest: Path) -> None:
    """A hard link to `source` at `dest`, or a read-only copy where links cannot be made."""
    try:
        os.link(source, dest)
    except OSError:  # another filesystem, a link count limit, a filesystem without links
        shutil.copyfile(source, dest)
        os.chmod(dest, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def place_inputs(
    run_dir: Path,
    inputs: dict[str, str],
    cache: SnapshotCache,
    interrupted: Callable[[], bool] = lambda: False,
) -> list[str]:
    """Place every input of a lease at its path in `run_dir`; the paths placed.

    Paths are checked again (the server did once): relative, no `..`, and never through a
    symlink or outside the run directory. Stops early, returning what was placed, once
    `interrupted()`. Raises InputError for an input that cannot be staged.
    """
    if not inputs:
        return []  # most records: no need to resolve the run directory (a call per part)
    root = Path(run_dir).resolve()
    placed = []
    for rel, sha256 in sorted(inputs.items()):
        if interrupted():
            break
        try:
            wire.check_input_path(rel)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        dest = root / rel
        _make_parents(root, rel)
        if os.path.lexists(dest):
            raise InputError(f"input {rel!r}: the run directory already has {rel}")
        with ExitStack() as stack:
            try:
                source = stack.enter_context(cache.held(sha256))  # kept until placed
            except InputError as exc:
                raise InputError(f"input {rel!r}: {exc}") from None
            try:
                _place(source, dest)
            except OSError as exc:
                raise InputError(
                    f"input {rel!r} cannot be written: {exc.strerror or exc}"
                ) from None
        placed.append(rel)
    return placed


def _make_parents(root: Path, rel: str) -> None:
    """Directories for input `rel` under `root`, refusing any that is a link or a file."""
    path = root
    for part in rel.split("/")[:-1]:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise InputError(f"input {rel!r}: {part!r} in the run directory is not a directory")
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise InputError(f"input {rel!r} cannot be written: {exc.strerror or exc}") from None
