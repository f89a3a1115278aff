"""Directories as tar.gz snapshots: `pack_dir` writes one (`extract.safe_extract` unpacks one).

Packing keeps regular files, directories and symlinks (as links, never followed), with
member names relative to the packed directory, sorted, in a gzip stream without a timestamp,
so the same tree gives the same bytes (the same snapshot) again. Devices, fifos and sockets
are left out.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["ArchiveError", "pack_dir"]

#: Decides, for a path relative to the packed directory and its lstat, to leave it out.
Skip = Callable[[str, os.stat_result], bool]


class ArchiveError(ValueError):
    """An archive that cannot be packed or is refused for extraction; the message names the
    member and the reason."""


# --- packing -------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        return self.handle.write(data)


class _Exactly(io.RawIOBase):
    """`size` bytes of an open file: zeros stand in for what a writer truncated meanwhile,
    so the tar stream stays whole whatever the file does while it is packed."""

    def __init__(self, handle: BinaryIO, size: int):
        self.handle, self.left = handle, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        n = self.left if n < 0 else min(n, self.left)
        data = self.handle.read(n) if n else b""
        data += bytes(n - len(data))
        self.left -= n
        return data


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _walk(
    root: Path, rel: str, patterns: tuple[str, ...], skip: Skip | None
) -> Iterator[tuple[str, os.stat_result]]:
    """Relative paths under `root/rel` and their lstat, sorted, directories before their
    contents."""
    try:
        with os.scandir(root / rel if rel else root) as entries:
            names = sorted(entry.name for entry in entries)
    except FileNotFoundError:
        return  # removed while we packed (a checkpoint directory of a running command)
    for name in names:
        child = f"{rel}/{name}" if rel else name
        if _excluded(child, patterns):
            continue
        try:
            info = os.lstat(root / child)
        except FileNotFoundError:
            continue
        if skip is not None and skip(child, info):
            continue
        yield child, info
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(root, child, patterns, skip)


def pack_dir(
    directory: Path, dest: Path, *, exclude: Iterable[str] = (), skip: Skip | None = None
) -> str:
    """Pack `directory` into the tar.gz file `dest` and return the sha256 of its bytes.

    A pattern in `exclude` (fnmatch, `*` crossing `/`) leaves out every path whose relative
    name or last part it matches, and a directory's whole subtree; `skip` can leave out more.
    Files that vanish or shrink while they are packed do not break the archive.
    """
    directory, dest = Path(directory), Path(dest)
    patterns = tuple(exclude)
    with open(dest, "wb") as raw:
        hashing = _HashingWriter(raw)
        gz = gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=hashing,
            compresslevel=6,
            mtime=0,  # type: ignore[arg-type]
        )
        with gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel, info in _walk(directory, "", patterns, skip):
                _add(tar, directory / rel, rel, info)
                tar.members.clear()  # only a reader needs them; a million would add up
    return hashing.digest.hexdigest()


def _add(tar: tarfile.TarFile, path: Path, rel: str, seen: os.stat_result) -> None:
    """Add one directory, symlink or regular file; anything else is left out."""
    try:
        if stat.S_ISDIR(seen.st_mode) or stat.S_ISLNK(seen.st_mode):
            info = tar.gettarinfo(str(path), rel)
            if info.issym() or info.isdir():
                tar.addfile(info)
            return
        if not stat.S_ISREG(seen.st_mode):
            return  # devices, fifos, sockets
        # O_NONBLOCK: a file swapped for a fifo meanwhile must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return  # gone meanwhile
    except OSError as exc:
        raise ArchiveError(f"cannot pack {rel}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = tar.gettarinfo(arcname=rel, fileobj=handle)
        if info.islnk():  # a second name of a file packed already: stored as a hard link
            tar.addfile(info)
        elif info.isreg():
            tar.addfile(info, _Exactly(handle, info.size))  # type: ignore[arg-type]
