"""`farmhand restore`: unpack a server backup (`farmhand backup`) into a new data directory.

Only the members a backup holds are accepted — `backup.json`, `farmhand.db`, `admin.token`,
`blobs/ab/cd/<sha256>` and, last, `backup-end.json` — each as a regular file: an absolute
path, a `..`, a link, a device or any other name refuses the whole file; every blob is
checked against its name, and a backup cut short (no end marker, or fewer blobs than it
says) is refused. The data directory is built beside the target and renamed into place when
complete, so a failed restore leaves nothing behind; a target that exists and is not empty
is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["RestoreError", "Restored", "restore"]

BACKUP_FORMAT = "farmhand-backup"
_BLOB = re.compile(r"^blobs/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})$")
_DIRS = re.compile(r"^blobs(/[0-9a-f]{2}(/[0-9a-f]{2})?)?$")
_FILES = {"backup.json": 0o600, "farmhand.db": 0o600, "admin.token": 0o600}
END = "backup-end.json"
CHUNK = 1024 * 1024


class RestoreError(ValueError):
    """The backup cannot be restored there; the message says why (nothing was written)."""


@dataclass
class Restored:
    """What `restore` unpacked."""

    data_dir: Path
    blobs: int
    bytes: int
    manifest: dict


def restore(archive: Path, data_dir: Path) -> Restored:
    """Unpack the backup `archive` into the new (missing or empty) directory `data_dir`."""
    data_dir = Path(data_dir).absolute()
    if data_dir.is_symlink():  # os.replace would not follow it: restore where it points
        raise RestoreError(
            f"{data_dir} is a symbolic link; restore into its target, {data_dir.resolve()}"
        )
    try:
        if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
            raise RestoreError(f"{data_dir} exists and is not empty; restore into a new directory")
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{data_dir.name}.restoring-"
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=data_dir.parent))
    except OSError as exc:
        raise RestoreError(f"cannot restore into {data_dir}: {exc.strerror or exc}") from exc
    try:
        blobs, size = _unpack(Path(archive), staging)
        manifest_path = staging / "backup.json"
        if not manifest_path.is_file() or not (staging / "farmhand.db").is_file():
            raise RestoreError(f"{archive} is not a farmhand backup (no backup.json/farmhand.db)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise RestoreError(f"{archive}: backup.json is not JSON") from exc
        if manifest.get("format") != BACKUP_FORMAT:
            raise RestoreError(f"{archive} is not a farmhand backup (backup.json says otherwise)")
        try:
            if data_dir.exists():
                data_dir.rmdir()  # empty, checked above
            os.replace(staging, data_dir)
        except OSError as exc:
            raise RestoreError(f"cannot restore into {data_dir}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Restored(data_dir=data_dir, blobs=blobs, bytes=size, manifest=manifest)


def _unpack(archive: Path, into: Path) -> tuple[int, int]:
    """Stream the members into `into`, refusing anything a backup does not hold."""
    blobs = size = 0
    end: dict | None = None
    try:
        tar = tarfile.open(archive, "r|*")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise RestoreError(f"{archive} is not a readable tar file: {exc}") from exc
    with tar:
        try:
            for member in tar:
                name = _check_name(member.name)
                if end is not None:
                    raise RestoreError(f"{archive}: {member.name!r} comes after the end marker")
                if member.isdir() and _DIRS.match(name):
                    continue
                if not member.isreg():
                    raise RestoreError(f"{archive}: {member.name!r} is not a regular file")
                if name == END:
                    end = _end_marker(archive, tar, member)
                    continue
                blob = _BLOB.match(name)
                if name not in _FILES and blob is None:
                    raise RestoreError(f"{archive}: {member.name!r} is not part of a backup")
                if blob and not blob.group(3).startswith(blob.group(1) + blob.group(2)):
                    raise RestoreError(f"{archive}: blob {name!r} is filed under the wrong prefix")
                source = tar.extractfile(member)
                assert source is not None
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with open(target, "xb") as out:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                if blob:
                    if digest.hexdigest() != blob.group(3):
                        raise RestoreError(f"{archive}: blob {blob.group(3)} is corrupted")
                    os.chmod(target, 0o444)
                    blobs += 1
                else:
                    os.chmod(target, _FILES[name])
                size += member.size
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise RestoreError(f"{archive} is truncated or damaged: {exc}") from exc
        except FileExistsError as exc:
            raise RestoreError(f"{archive} holds {exc.filename} twice") from exc
        except OSError as exc:  # a bad gzip header read mid-stream, a full disk
            raise RestoreError(f"{archive} cannot be unpacked: {exc.strerror or exc}") from exc
    if end is None:
        raise RestoreError(f"{archive} is truncated: a whole backup ends with {END}")
    if end.get("blobs") != blobs:
        raise RestoreError(f"{archive} holds {blobs} blobs; its end marker says {end.get('blobs')}")
    return blobs, size


def _end_marker(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict:
    source = tar.extractfile(member) if member.isreg() and member.size < 4096 else None
    try:
        data = json.loads(source.read()) if source else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RestoreError(f"{archive}: {END} is not the end marker of a backup")
    return data


def _check_name(name: str) -> str:
    """A member's name if it is a plain relative path inside the target; else RestoreError."""
    path = PurePosixPath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(part in ("..", "") for part in name.split("/") if part != ".")
    ):
        raise RestoreError(f"backup member {name!r} is not a plain relative path")
    return str(path)
