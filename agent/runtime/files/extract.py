"""Unpacking a tar.gz that may have been crafted to escape: `safe_extract`.

Extraction trusts nothing in the archive. It refuses, with `ArchiveError` naming the member:
absolute names and names with `..` parts; names that pass through a symlink (one the archive
made or one already in the target); symlinks that are absolute, that climb (`..`) above the
archive's root or that have a `..` after an ordinary part (`a/../..`: what that means depends
on what `a` becomes later), or whose target resolves outside now; hard links to anything but
a regular file already extracted; devices, fifos and other special members; replacing a
directory or a link; more than `max_files` members or `max_bytes` bytes of contents; header
blocks over 16 MiB and more decompressed data than the members can explain (a gzip bomb).
Because links only ever point inside and never change once made, and names never follow a
link, nothing is written outside the target, whatever order the members come in. What was
extracted before a refusal stays inside the target; callers discard it.

Python's own `tarfile.data_filter` is applied as well where it exists (3.11.4+), never
instead.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from farmhand.runtime.files.archives import ArchiveError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_FILES", "ArchiveError", "Extracted", "safe_extract"]

DEFAULT_MAX_BYTES = 64 * 1024**3
DEFAULT_MAX_FILES = 1_000_000
CHUNK = 1024 * 1024
#: The largest single header read tarfile may ask for (long names, pax records).
MAX_HEADER_READ = 16 * 1024 * 1024
#: Decompressed bytes allowed per member beyond its contents (headers, padding, pax).
HEADER_ALLOWANCE = 8 * 1024


@dataclass(frozen=True)
class Extracted:
    """What `safe_extract` wrote: members and bytes of file contents."""

    files: int
    bytes: int


class _Bounded(io.RawIOBase):
    """A decompressing reader that refuses a gzip bomb: at most `limit` bytes in all, and no
    single read over MAX_HEADER_READ (tarfile reads a whole long-name or pax header at once;
    contents are copied in CHUNKs)."""

    def __init__(self, gz: gzip.GzipFile, limit: int):
        self.gz, self.limit = gz, limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.gz.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0 and offset > self.limit:
            raise ArchiveError(f"more than {self.limit} bytes once decompressed")
        return self.gz.seek(offset, whence)

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if n < 0 or n > MAX_HEADER_READ:
            raise ArchiveError(f"a header block of {n} bytes (more than {MAX_HEADER_READ})")
        data = self.gz.read(n)
        if self.gz.tell() > self.limit:
            raise ArchiveError(f"more than {self.limit} bytes once decompressed")
        return data


def _member_parts(name: str, what: str) -> list[str]:
    """The parts of a member name, or ArchiveError for one that could leave the target."""
    if "\x00" in name:
        raise ArchiveError(f"{what} {name!r} holds a NUL byte")
    if name.startswith("/"):
        raise ArchiveError(f"{what} {name!r} is an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{what} {name!r} has a '..' part")
    return parts


def _check_symlink(name: str, depth: int, linkname: str) -> None:
    """A symlink at `depth` directories below the root may point only inside, climbing only
    at its start (see the module docstring)."""
    if not linkname or "\x00" in linkname:
        raise ArchiveError(f"symlink {name!r} has an empty or NUL target")
    if linkname.startswith("/"):
        raise ArchiveError(f"symlink {name!r} points to the absolute path {linkname!r}")
    parts = [part for part in linkname.split("/") if part not in ("", ".")]
    climbs = 0
    while climbs < len(parts) and parts[climbs] == "..":
        climbs += 1
    if ".." in parts[climbs:]:
        raise ArchiveError(f"symlink {name!r} -> {linkname!r} has '..' after a name")
    if climbs > depth:
        raise ArchiveError(f"symlink {name!r} -> {linkname!r} points outside the target")


class _Extractor:
    def __init__(self, tar: tarfile.TarFile, target: Path, max_bytes: int, max_files: int):
        self.tar, self.max_bytes, self.max_files = tar, max_bytes, max_files
        self.root = os.path.realpath(target)
        self.files = 0
        self.bytes = 0
        self.dirs: list[tuple[str, int, float | None]] = []  # modes and times, set at the end

    def run(self) -> Extracted:
        while (member := self.tar.next()) is not None:
            self.tar.members.clear()  # streamed: a million TarInfos would add up
            self.extract(member)
        for path, mode, mtime in reversed(self.dirs):
            os.chmod(path, (mode & 0o755) | 0o700)  # the owner can always clean up
            if mtime is not None:
                os.utime(path, (mtime, mtime))
        return Extracted(self.files, self.bytes)

    def extract(self, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = _member_parts(name, "member")
        self.files += 1
        if self.files > self.max_files:
            raise ArchiveError(f"more than {self.max_files} members")
        kind = _kind(member)
        if member.isreg():
            self.bytes += member.size
            if self.bytes > self.max_bytes:
                raise ArchiveError(
                    f"member {name!r} brings the contents past {self.max_bytes} bytes"
                )
        if not parts:
            return  # the root itself ("." or "./")
        if kind == "symlink":
            _check_symlink(name, len(parts) - 1, member.linkname)
        parent = self._parents(parts[:-1], name)
        path = os.path.join(parent, parts[-1])
        existing = _lstat(path)
        if kind == "dir":
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                raise ArchiveError(f"directory {name!r} would replace a file or link")
        elif existing is not None and (not stat.S_ISREG(existing.st_mode) or kind == "symlink"):
            raise ArchiveError(f"member {name!r} would replace a directory or link")
        if kind == "symlink":
            resolved = os.path.realpath(os.path.join(parent, member.linkname))
            if not _inside(resolved, self.root):
                raise ArchiveError(f"symlink {name!r} -> {member.linkname!r} resolves outside")
        source = self._link_source(member) if kind == "hardlink" else None
        _python_filter(member, self.root)  # a second opinion; ours above already decided
        if kind == "dir":
            if existing is None:
                os.mkdir(path, 0o700)
            self.dirs.append((path, member.mode, member.mtime))
            return
        if existing is not None:
            os.unlink(path)  # never written through: it may be a link to a file elsewhere
        if kind == "symlink":
            os.symlink(member.linkname, path)
        elif source is not None:
            os.link(source, path, follow_symlinks=False)
        else:
            self._write(member, path)

    def _parents(self, parts: list[str], name: str) -> str:
        """The member's directory, made as needed, with no link on the way."""
        path = self.root
        for part in parts:
            path = os.path.join(path, part)
            info = _lstat(path)
            if info is None:
                os.mkdir(path, 0o700)
                self.dirs.append((path, 0o755, None))  # implied by a member inside it
            elif stat.S_ISLNK(info.st_mode):
                raise ArchiveError(f"member {name!r} passes through a symlink ({part!r})")
            elif not stat.S_ISDIR(info.st_mode):
                raise ArchiveError(f"member {name!r} passes through a file ({part!r})")
        return path

    def _link_source(self, member: tarfile.TarInfo) -> str:
        """A hard link's source: a regular file already inside the target."""
        parts = _member_parts(member.linkname, f"hard link {member.name!r} to")
        path = self.root
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            info = _lstat(path)
            last = i == len(parts) - 1
            if info is None or not (stat.S_ISREG if last else stat.S_ISDIR)(info.st_mode):
                raise ArchiveError(
                    f"hard link {member.name!r} -> {member.linkname!r} is not to a regular "
                    "file extracted before it"
                )
        if not parts:
            raise ArchiveError(f"hard link {member.name!r} has no target")
        return path

    def _write(self, member: tarfile.TarInfo, path: str) -> None:
        """Copy a regular member into a new file (never through an existing one)."""
        source = self.tar.extractfile(member)
        assert source is not None  # regular members always have contents
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            left = member.size
            while left > 0:
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    raise ArchiveError(f"member {member.name!r} is cut short")
                out.write(chunk)
                left -= len(chunk)
            os.fchmod(out.fileno(), (member.mode & 0o755) | 0o400)
        os.utime(path, (member.mtime, member.mtime))


def _python_filter(member: tarfile.TarInfo, root: str) -> None:
    """`tarfile.data_filter`, where this Python has it."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return
    try:
        data_filter(member, root)
    except tarfile.FilterError as exc:
        raise ArchiveError(f"member {member.name!r}: {exc}") from None


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.isreg():
        return "file"
    what = "a device" if member.isdev() else "a special file"
    raise ArchiveError(f"member {member.name!r} is {what} (type {member.type!r})")


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def safe_extract(
    tarball: Path,
    target: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> Extracted:
    """Extract the tar.gz `tarball` into `target` (made if missing), refusing anything that
    could write outside it or exceed the caps; `ArchiveError` says which member and why."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    limit = max_bytes + (max_files + 2) * HEADER_ALLOWANCE
    try:
        with gzip.open(tarball, "rb") as gz:
            reader = _Bounded(gz, limit)  # type: ignore[arg-type]
            with tarfile.open(fileobj=reader, mode="r:") as tar:  # type: ignore[call-overload]
                return _Extractor(tar, target, max_bytes, max_files).run()
    except ArchiveError as exc:
        raise ArchiveError(f"refused {Path(tarball).name}: {exc}") from None
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise ArchiveError(f"{Path(tarball).name} is not a readable tar.gz: {exc}") from None
