"""Run directories on the agent's node: create them, read what a run left there, remove them.

Layout: `<workdir>/runs/<campaign_id>/<safe key>/<run_id>/`, holding `stdout.txt`,
`stderr.txt`, `params.json` (the record's params, when it has any) and, by convention, the
calculation's `results.json`; inputs, parents' results and checkpoints are staged here too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

from farmhand import wire

__all__ = [
    "MAX_RESULTS_BYTES",
    "PARAMS_FILE",
    "RESULTS_FILE",
    "STDERR_FILE",
    "STDOUT_FILE",
    "make_run_dir",
    "read_results",
    "read_tail",
    "remove_run_dir",
    "safe_name",
    "write_params",
]

RESULTS_FILE = "results.json"
PARAMS_FILE = "params.json"
STDOUT_FILE = "stdout.txt"
STDERR_FILE = "stderr.txt"
MAX_RESULTS_BYTES = 16 * 1024 * 1024

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 100  # well under NAME_MAX (255 bytes) with room for the hash suffix
_HASH_CHARS = 16


def safe_name(key: str) -> str:
    """A directory name for a record key: the key itself when it is plain ASCII
    (`[A-Za-z0-9._-]`, not starting with `.` or `-`, at most 100 characters), else the
    sanitized key plus `~` and 16 hex digits of its sha256.

    Distinct keys get distinct names: a plain key never contains `~`, and a sanitized one
    carries the hash of the real key.
    """
    text = _UNSAFE.sub("_", key)[:_MAX_NAME].lstrip(".-")
    if text == key:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{text or '_'}~{digest}"


def make_run_dir(workdir: Path, campaign_id: int, key: str, run_id: int) -> Path:
    """Create `workdir/runs/<campaign_id>/<safe key>/<run_id>/` and return it (absolute).

    Raises FileExistsError if that run directory already exists: a run id is never reused,
    so an existing directory means leftovers that must not be mixed into a new run.
    """
    for name, value in (("campaign_id", campaign_id), ("run_id", run_id)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    name = safe_name(key)
    if name in ("", ".", "..") or "/" in name:  # defence in depth: safe_name makes none
        raise ValueError(f"record key {key!r} would leave the work directory")
    parent = _runs_root(os.fspath(workdir)) / str(campaign_id) / name
    path = parent / str(run_id)
    # The key's directory may be removed as empty at any moment (the last run of the same
    # record being cleaned up on another thread): it is made again.
    for _ in range(3):
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # it was there, then removed before mkdir looked at it
            continue
        try:
            path.mkdir()
            return path
        except FileNotFoundError:  # removed between the two mkdirs
            continue
    parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()  # raises what keeps failing
    return path


@functools.lru_cache(maxsize=16)
def _runs_root(workdir: str) -> Path:
    """`<workdir>/runs`, resolved once per work directory (resolving walks every part of
    the path with a system call each)."""
    return Path(workdir).resolve() / "runs"


def write_params(run_dir: Path, params: dict[str, Any]) -> None:
    """The record's params as `params.json` in its run directory (nothing when it has none)."""
    if params:
        text = json.dumps(params, indent=2, sort_keys=True) + "\n"
        (Path(run_dir) / PARAMS_FILE).write_text(text, encoding="utf-8")


def read_tail(path: Path, max_bytes: int = wire.MAX_TAIL_BYTES) -> str:
    """The last `max_bytes` bytes of a file as text; "" if the file is missing or unreadable.

    Never more than `max_bytes` characters (UTF-8 decoding never yields more characters than
    bytes); a character cut by the window is dropped, undecodable bytes become U+FFFD, and NUL
    (which PostgreSQL text cannot hold) becomes U+FFFD too.
    """
    if max_bytes <= 0:
        return ""
    try:  # os calls, not open(): 3 system calls instead of 7 (each one a GIL hand-off)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        data = os.pread(fd, max_bytes, start) if size else b""
    except OSError:
        return ""
    finally:
        os.close(fd)
    if start > 0:
        # Skip continuation bytes of a character whose first byte fell outside the window.
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
            skip += 1
        data = data[skip:]
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_results(run_dir: Path) -> tuple[dict[str, Any] | list[Any] | None, str | None]:
    """The run's `results.json`: `(document, None)`, `(None, None)` if there is none, or
    `(None, message)` when it cannot be used as a result document."""
    path = Path(run_dir) / RESULTS_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"results.json cannot be read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return None, "results.json is not a regular file"
    if info.st_size > MAX_RESULTS_BYTES:
        return None, (
            f"results.json is {info.st_size} bytes; the limit is "
            f"{MAX_RESULTS_BYTES} bytes ({MAX_RESULTS_BYTES // 2**20} MiB)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"results.json cannot be read: {exc.strerror or exc}"
    try:
        document = json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        return None, "results.json is not valid JSON: nested too deeply"
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, f"results.json is not valid JSON: {exc}"
    if not isinstance(document, (dict, list)):
        return None, "results.json must hold a JSON object or array"
    try:
        wire.check_document(document)  # the server refuses what the wire refuses
    except ValueError as exc:
        return None, f"results.json cannot be a result document: it {exc}"
    return document, None


def _make_writable_and_retry(func: Any, path: str, exc: BaseException) -> None:
    if isinstance(exc, FileNotFoundError):
        return
    try:
        os.chmod(os.path.dirname(path) or ".", stat.S_IRWXU)
        os.chmod(path, stat.S_IRWXU)
    except OSError:
        raise exc from None
    func(path)


def _remove_flat(path: str) -> bool:
    """Remove a directory that holds no directory (most run directories, once packing took
    away an empty `checkpoint/`): one read of it and an unlink per entry, where rmtree makes
    twice the system calls. False, having removed nothing, when it holds a directory."""
    with os.scandir(path) as entries:
        found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    if any(is_dir for _, is_dir in found):
        return False
    for name, _ in found:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}/{name}")  # a symlink is unlinked, never followed
    os.rmdir(path)
    return True


def remove_run_dir(path: Path) -> None:
    """Remove a (partial) run directory and everything in it, then its parent (the
    record's key directory) if that is left empty; a missing one is fine.

    Read-only files and directories a command left behind are made writable first.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):  # a symlink (never followed) or a file
        path.unlink()
        return
    try:
        flat = _remove_flat(os.fspath(path))
    except OSError:  # a read-only directory, say: rmtree makes it writable and goes on
        flat = False
    if flat:
        pass
    elif sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=lambda f, p, info: _make_writable_and_retry(f, p, info[1]))
    # The record's key directory, once its last run is gone: a million records would
    # otherwise leave a million empty directories on the node. Not empty: another run of
    # the record is there (a retry), which removes it in turn.
    with contextlib.suppress(OSError):
        os.rmdir(path.parent)
