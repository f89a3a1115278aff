"""Directories as tar.gz snapshots: `pack_dir` writes one (`extract.safe_extract` unpacks one).

Packing keeps regular files, directories and symlinks (as links, never followed), with
member names relative to the packed directory, sorted, modification times in whole seconds,
in a gzip stream without a timestamp, so the same tree gives the same bytes (the same
snapshot) again. Devices, fifos and sockets are left out.
"""

from __future__ import annotations

import fnmatch
import functools
import grp
import hashlib
import os
import pwd
import stat
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["ArchiveError", "pack_dir", "pack_small"]

#: Decides, for a path relative to the packed directory and its lstat, to leave it out.
Skip = Callable[[str, os.stat_result], bool]


class ArchiveError(ValueError):
    """An archive that cannot be packed or is refused for extraction; the message names the
    member and the reason."""


# --- packing -------------------------------------------------------------------------------

#: Bytes read from a file at a time while packing it.
_CHUNK = 1024 * 1024
_BLOCK = tarfile.BLOCKSIZE
#: The gzip header Python's GzipFile writes with no name, mtime 0 and level 6 (so the same
#: tree gives the same bytes whichever of the two packed it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class _TarGz:
    """A tar stream written through gzip (level 6) to a file, hashing the file's bytes.

    Members are written straight from their stat: `tarfile.TarFile` would look up the owner's
    names, make a PAX header for every sub-second mtime and copy each TarInfo, which cost ~0.9
    ms for a run directory of two empty logs — more than the rest of a short record's agent
    side (issue 16). Each header is still `TarInfo.tobuf` (PAX format: a PAX record only
    where ustar cannot hold a field, such as a long or non-ASCII name)."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.zip = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.crc = self.size = 0
        # Raw tar bytes wait here until a chunk's worth (or the end) goes through zlib in
        # one call: a run directory of small files is compressed, summed and hashed once.
        self._raw: list[bytes] = []
        self._raw_size = 0
        self._emit(_GZIP_HEADER)

    def _emit(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.handle.write(data)

    def write(self, data: bytes) -> None:
        """Add raw tar bytes to the stream."""
        self._raw.append(data)
        self._raw_size += len(data)
        if self._raw_size >= _CHUNK:
            self._compress()

    def _compress(self) -> None:
        data = b"".join(self._raw)
        self._raw, self._raw_size = [], 0
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self._emit(self.zip.compress(data))

    def member(self, info: tarfile.TarInfo, data: BinaryIO | None = None) -> None:
        """One member: its header, then `info.size` bytes of `data` padded to a block."""
        header = _ustar(info)
        if header is None:  # a long or non-ASCII name, say: tarfile writes the PAX records
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self.write(header)
        if data is None or info.size == 0:
            return
        left = info.size
        while left > 0:
            chunk = data.read(min(_CHUNK, left))
            if not chunk:  # truncated while we packed: zeros keep the stream whole
                chunk = bytes(min(_CHUNK, left))
            self.write(chunk)
            left -= len(chunk)
        if info.size % _BLOCK:
            self.write(bytes(_BLOCK - info.size % _BLOCK))

    def close(self) -> str:
        """End the tar (two zero blocks, padded to a record) and the gzip stream; the sha256
        of everything written."""
        end = 2 * _BLOCK
        written = self.size + self._raw_size
        end += (tarfile.RECORDSIZE - (written + end) % tarfile.RECORDSIZE) % tarfile.RECORDSIZE
        self.write(bytes(end))
        self._compress()
        self._emit(self.zip.flush())
        self._emit(struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))
        return self.digest.hexdigest()


def _ustar(info: tarfile.TarInfo) -> bytes | None:
    """The member's ustar header, byte for byte what `info.tobuf` makes when every field
    fits ustar (ASCII names of at most 100 bytes, numbers in their octal fields); None when
    one does not. tarfile's own route checks each field for a PAX record first, which costs
    several times more than the header."""
    name = info.name + "/" if info.type == tarfile.DIRTYPE else info.name
    fields = (name, info.linkname, info.uname, info.gname)
    if not all(f.isascii() for f in fields) or len(name) > 100 or len(info.linkname) > 100:
        return None
    if len(info.uname) > 32 or len(info.gname) > 32:
        return None
    numbers = (info.uid, info.gid, info.size, info.mtime)
    if not all(0 <= n < limit for n, limit in zip(numbers, _LIMITS, strict=True)):
        return None
    header = _USTAR.pack(
        name.encode(),
        b"%07o\0" % info.mode,
        b"%07o\0" % info.uid,
        b"%07o\0" % info.gid,
        b"%011o\0" % info.size,
        b"%011o\0" % info.mtime,
        b" " * 8,  # the checksum counts its own field as spaces
        info.type,
        info.linkname.encode(),
        tarfile.POSIX_MAGIC,
        info.uname.encode(),
        info.gname.encode(),
        b"",  # device numbers: empty, as tarfile leaves them for what is not a device
        b"",
        b"",
    )
    checksum = b"%06o\0" % sum(header)
    return header[:148] + checksum + header[155:]


#: A ustar header's fields (the magic holds "ustar\0" and the version "00").
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s167s")
_LIMITS = (8**7, 8**7, 8**11, 8**11)  # uid, gid, size, mtime


@functools.cache
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@functools.cache
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _info(rel: str, seen: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.type = kind
    info.mode = stat.S_IMODE(seen.st_mode)
    info.uid, info.gid = seen.st_uid, seen.st_gid
    info.uname, info.gname = _user(seen.st_uid), _group(seen.st_gid)
    info.mtime = int(seen.st_mtime)  # whole seconds, as ustar holds them: no PAX record
    return info


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _walk(
    root: str, rel: str, patterns: tuple[str, ...], skip: Skip | None
) -> Iterator[tuple[str, os.stat_result]]:
    """Relative paths under `root/rel` and their lstat, sorted, directories before their
    contents."""
    try:
        with os.scandir(f"{root}/{rel}" if rel else root) as entries:
            found = sorted((entry.name, entry) for entry in entries)
    except FileNotFoundError:
        return  # removed while we packed (a checkpoint directory of a running command)
    for name, entry in found:
        child = f"{rel}/{name}" if rel else name
        if patterns and _excluded(child, patterns):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
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
    return pack_small(directory, dest, keep_up_to=0, exclude=exclude, skip=skip)[0]


def pack_small(
    directory: Path,
    dest: Path,
    *,
    keep_up_to: int,
    exclude: Iterable[str] = (),
    skip: Skip | None = None,
) -> tuple[str, bytes | None]:
    """`pack_dir`, keeping an archive of at most `keep_up_to` bytes in memory: (sha256, its
    bytes) with no file made, or (sha256, None) once a larger one is written to `dest`."""
    root = os.fspath(directory)
    patterns = tuple(exclude)
    first_names: dict[tuple[int, int], str] = {}  # (device, inode) → name, for hard links
    with _Spill(Path(dest), keep_up_to) as raw:
        out = _TarGz(raw)  # type: ignore[arg-type]
        for rel, seen in _walk(root, "", patterns, skip):
            _add(out, f"{root}/{rel}", rel, seen, first_names)
        sha256 = out.close()
    return sha256, raw.kept()


class _Spill:
    """A write-only sink that keeps up to `limit` bytes in memory and, past that, writes
    them and the rest to the file `path`."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit = path, limit
        self.buffer: bytearray | None = bytearray()
        self.file: BinaryIO | None = None

    def write(self, data: bytes) -> int:
        if self.buffer is not None and len(self.buffer) + len(data) <= self.limit:
            self.buffer += data
            return len(data)
        if self.file is None:
            try:
                self.file = open(self.path, "wb")  # noqa: SIM115 (closed by __exit__)
            except FileNotFoundError:  # its directory is made when first needed
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.file = open(self.path, "wb")  # noqa: SIM115
            if self.buffer:
                self.file.write(self.buffer)
            self.buffer = None
        return self.file.write(data)

    def kept(self) -> bytes | None:
        """The bytes, when they stayed in memory."""
        return None if self.buffer is None else bytes(self.buffer)

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _add(
    out: _TarGz,
    path: str,
    rel: str,
    seen: os.stat_result,
    first_names: dict[tuple[int, int], str],
) -> None:
    """Add one directory, symlink or regular file; anything else is left out."""
    if stat.S_ISDIR(seen.st_mode):
        out.member(_info(rel, seen, tarfile.DIRTYPE))
        return
    if stat.S_ISLNK(seen.st_mode):
        try:
            target = os.readlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return  # gone meanwhile
        info = _info(rel, seen, tarfile.SYMTYPE)
        info.linkname = target
        out.member(info)
        return
    if not stat.S_ISREG(seen.st_mode):
        return  # devices, fifos, sockets
    if seen.st_size == 0 and seen.st_nlink == 1:
        # Nothing to read (empty logs, mostly): the walk's lstat is all it needs. Written
        # to meanwhile, it is packed as it was, as a file that grows after it was read.
        out.member(_info(rel, seen, tarfile.REGTYPE))
        return
    try:
        # O_NONBLOCK: a file swapped for a fifo meanwhile must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return  # gone meanwhile
    except OSError as exc:
        raise ArchiveError(f"cannot pack {rel}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        now = os.fstat(fd)  # what was opened, not what the walk saw
        if not stat.S_ISREG(now.st_mode):
            return
        inode = (now.st_dev, now.st_ino)
        if now.st_nlink > 1 and inode in first_names:
            # A second name of a file packed already: stored as a hard link.
            info = _info(rel, now, tarfile.LNKTYPE)
            info.linkname = first_names[inode]
            out.member(info)
            return
        if now.st_nlink > 1:
            first_names[inode] = rel
        info = _info(rel, now, tarfile.REGTYPE)
        info.size = now.st_size
        out.member(info, handle)
