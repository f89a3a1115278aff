"""Checkpoints: what a command saves in `$FARMHAND_CHECKPOINT_DIR`, kept on the server so
that the record's next attempt starts from it.

Before the command starts, `<run dir>/checkpoint/` is made; when the lease names a
checkpoint (the newest one an earlier attempt of the record saved), it is downloaded and
unpacked there (`extract.safe_extract`) and the command sees `FARMHAND_RESTORED=1`. A
checkpoint that cannot be restored (gone, refused as unsafe) is logged and the command
starts afresh, without `FARMHAND_RESTORED`.

While the command runs, a thread (started once the first interval passed, so that short
commands need none) looks at the directory every `interval` seconds (run_args
`checkpoint_interval`, else the agent's `--checkpoint-interval`; 0: only at the end); when
its contents changed since the last upload (names, sizes, mtimes), it packs them, uploads the
tar.gz as a snapshot under the run's lease and attaches it to the run. Once more when the run
is given back (walltime drain, shutdown) or fails, before that report, while the lease is
still this agent's. A failed upload is logged and tried again at the next turn; it never
fails the run.

An upload may happen at any moment, so a task should write each checkpoint file whole: to
a temporary name first, then rename it into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from farmhand import wire
from farmhand.client import Conflict, FarmhandClient, FarmhandError
from farmhand.client.retry import is_transient
from farmhand.runtime.files import run_archive
from farmhand.runtime.files.archives import ArchiveError, pack_dir
from farmhand.runtime.files.extract import safe_extract

__all__ = ["CHECKPOINT_DIR", "Checkpointer", "interval", "restore"]

log = logging.getLogger("farmhand.agent")

CHECKPOINT_DIR = run_archive.CHECKPOINT_DIR


def interval(run_args: dict[str, Any], default: float) -> float:
    """`run_args.checkpoint_interval` (seconds between uploads, or any duration `walltime`
    takes: `10m`, `00:10:00`; 0: only at the end), else `default`. ValueError names a value
    that is not a duration."""
    seconds = wire.run_arg_seconds(run_args, "checkpoint_interval")
    return default if seconds is None else seconds


def restore(
    client: FarmhandClient,
    sha256: str,
    directory: Path,
    scratch: Path,
    *,
    max_bytes: int,
    max_files: int,
) -> bool:
    """Unpack checkpoint `sha256` into `directory`; False (logged, the directory emptied)
    when it cannot be fetched or is refused. ServerUnavailable and 5xx propagate (retry)."""
    scratch.mkdir(parents=True, exist_ok=True)
    tarball = scratch / f"restore-{sha256}-{threading.get_ident()}.tar.gz"
    try:
        client.download_snapshot(sha256, tarball)
        safe_extract(tarball, directory, max_bytes=max_bytes, max_files=max_files)
        return True
    except FarmhandError as exc:
        if is_transient(exc):
            raise
        problem = str(exc)
    except (ArchiveError, OSError) as exc:
        problem = str(exc)
    finally:
        tarball.unlink(missing_ok=True)
    log.warning("cannot restore checkpoint %s; starting afresh: %s", sha256, problem)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(exist_ok=True)
    return False


def fingerprint(directory: Path) -> str | None:
    """A digest of the names, types, sizes and mtimes under `directory`; None if empty."""
    digest = hashlib.sha256()
    found = False
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            found = True
            rel = os.path.relpath(path, directory)
            digest.update(f"{rel}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest() if found else None


class Checkpointer:
    """Uploads one run's checkpoint directory while its command runs (`start`, `stop`) and
    once more on demand (`save`)."""

    def __init__(
        self,
        client: FarmhandClient,
        lease: wire.Lease,
        directory: Path,
        scratch: Path,
        every: float,
        *,
        empty: bool = False,
    ):
        self.client = client
        self.lease = lease
        self.directory = directory
        self.scratch = scratch
        self.every = every
        self.saved: list[str] = []  #: sha256 of each checkpoint attached, oldest first
        # A restored checkpoint is not sent back; a directory just made is known empty.
        self._last = None if empty else fingerprint(directory)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._began: float | None = None  # monotonic, from start()

    def start(self) -> None:
        """Upload every `every` seconds from now on (not at all for 0); `tick` drives it."""
        self._began = time.monotonic()

    def tick(self) -> None:
        """Called by the attempt's thread while its command runs: once the first upload is
        due, a thread of its own takes the periodic uploads over. A command that ends
        sooner — most do — never costs a thread."""
        if (
            self._thread is not None
            or self._began is None
            or self.every <= 0
            or self._stopped.is_set()
            or time.monotonic() - self._began < self.every
        ):
            return
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"farmhand-checkpoint-{self.lease.run_id}"
        )
        self._thread.start()

    def stop(self) -> None:
        """No more periodic uploads; waits for one in progress."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self.save("periodic")
            if self._stopped.wait(self.every):
                return

    def save(self, why: str) -> bool:
        """Upload the directory if it changed since the last upload; True if a new
        checkpoint was attached. Never raises: a failure is logged."""
        lease = self.lease
        with self._lock:
            try:
                now = fingerprint(self.directory)
                if now is None or now == self._last:
                    return False
                self.scratch.mkdir(parents=True, exist_ok=True)
                tarball = self.scratch / f"checkpoint-{lease.run_id}.tar.gz"
                try:
                    sha = pack_dir(self.directory, tarball)
                    self.client.upload_snapshot(
                        tarball, sha256=sha, run_id=lease.run_id, token=lease.token
                    )
                finally:
                    tarball.unlink(missing_ok=True)
                self.client.add_checkpoint(lease.run_id, lease.token, sha)
            except Conflict as exc:
                log.info("no checkpoint of %s (run %d): %s", lease.key, lease.run_id, exc)
                return False
            except (FarmhandError, ArchiveError, OSError) as exc:
                log.warning(
                    "could not save the %s checkpoint of %s (run %d): %s",
                    why,
                    lease.key,
                    lease.run_id,
                    exc,
                )
                return False
            self._last = now
            self.saved.append(sha)
        log.info("saved the %s checkpoint of %s (run %d): %s", why, lease.key, lease.run_id, sha)
        return True
