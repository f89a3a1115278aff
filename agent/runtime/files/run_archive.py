"""An attempt's output archive: its run directory as a tar.gz snapshot named in the final
report (`archive`), so the record's outputs live on the server.

After the command ends (complete or fail; not when the run is given back or cancelled), the
run directory is packed: logs, `results.json`, the checkpoint directory and whatever the
command left, except
- the checkpoint directory when it is empty (staging made it, the command left it so: it is
  removed first, which also spares the packing and the removal of the run directory a
  directory each),

- what run_args `archive_exclude` names (glob patterns such as `"*.tmp"` or `"scratch"`,
  matched against each path relative to the run directory and against its last part; a
  matching directory drops its whole subtree),
- staged inputs that are still as staged (the server has them already),
- `parents/` (the parents' results and archives belong to the parents).

run_args `archive = false` skips it; the run directory then stays on the node, since it holds
the only copy of the outputs.

The archive is packed into the outbox's `archives/` directory; the outbox uploads it under
the run's lease just before it delivers the report (at once, or whenever the server is back),
small archives whose reports go together in one request (`POST /snapshots/batch`). An
archive up to `IN_MEMORY` bytes (most: a short calculation leaves a few KiB) is never a
file of its own: it is written into the outbox's file with its report, made durable by the
same fsync. Packing
holds no command slot. An archive the server refuses for good (over its size cap, say) is
logged and the report goes without it; the run directory then stays on the node.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farmhand import wire
from farmhand.runtime.files.archives import ArchiveError, pack_small
from farmhand.runtime.files.parents import PARENTS_DIR

#: The run directory's checkpoint directory, which staging makes (`checkpoints` names it
#: from here).
CHECKPOINT_DIR = "checkpoint"

__all__ = ["Packed", "Staged", "archive", "excludes", "pack", "stat_identity", "wanted"]

log = logging.getLogger("farmhand.agent")

#: A staged input as placed: (device, inode, size, mtime) — unchanged means not packed.
Staged = dict[str, tuple[int, int, int, int]]


def stat_identity(info: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a staged input apart from a file the command put in its place."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def wanted(run_args: dict[str, Any]) -> bool:
    """`run_args.archive` (default true): whether the run directory is archived."""
    value = run_args.get("archive", True)
    if not isinstance(value, bool):
        raise ValueError(f"run_args.archive must be true or false, not {value!r}")
    return value


def excludes(run_args: dict[str, Any]) -> list[str]:
    """`run_args.archive_exclude`: glob patterns left out of the archive."""
    value = run_args.get("archive_exclude", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"run_args.archive_exclude must be a list of patterns, not {value!r}")
    return value


#: Archives up to this size stay in memory and go into the outbox's own file with their
#: report (one fsync for both); larger ones are written to `archives/` beside it.
IN_MEMORY = 64 * 1024


@dataclass
class Packed:
    """An archive for the report: its sha256, and the bytes (`data`, when small) or the file
    (`pending`) the outbox uploads."""

    sha256: str
    pending: Path | None = None
    data: bytes | None = None


def pack(
    lease: wire.Lease, run_dir: Path, archives: Path, *, exclude: list[str], staged: Staged
) -> Packed | None:
    """Pack `run_dir` for the outbox, which uploads it with the report (small archives that
    finish together in one request): in memory up to `IN_MEMORY` bytes, else into
    `archives/<run id>.tar.gz`; None (logged) when it cannot be packed."""

    def skip(rel: str, info: os.stat_result) -> bool:
        if rel == PARENTS_DIR:
            return True
        return rel in staged and stat_identity(info) == staged[rel]

    partial = archives / f".tmp-{lease.run_id}.tar.gz"
    path = archives / f"{lease.run_id}.tar.gz"
    try:
        sha256, data = pack_small(
            run_dir, partial, keep_up_to=IN_MEMORY, exclude=exclude, skip=skip
        )
        if data is not None:
            return Packed(sha256, data=data)
        os.replace(partial, path)
    except (ArchiveError, OSError) as exc:
        partial.unlink(missing_ok=True)
        log.warning("cannot archive %s (run %d): %s", run_dir, lease.run_id, exc)
        return None
    return Packed(sha256, pending=path)


def archive(lease: wire.Lease, run_dir: Path, archives: Path, *, staged: Staged) -> Packed | None:
    """The run's archive as its run_args ask (`archive`, `archive_exclude`), packed for the
    outbox; None when there is none (not wanted, or it could not be made: logged)."""
    try:
        if not wanted(lease.run_args):
            return None
        exclude = excludes(lease.run_args)
    except ValueError as exc:
        log.warning("no archive of %s (run %d): %s", lease.key, lease.run_id, exc)
        return None
    with contextlib.suppress(OSError):  # not empty (or gone): packed as it is
        os.rmdir(run_dir / CHECKPOINT_DIR)
    return pack(lease, run_dir, archives, exclude=exclude, staged=staged)
