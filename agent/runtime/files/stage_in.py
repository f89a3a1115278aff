"""What a run directory gets from the server before its command starts: the record's input
files, its parents' archives (run_args `unpack_parents = true`) and the checkpoint an
earlier attempt saved.

This happens in the attempt's staging phase, before it waits for a command slot, so the
leases an agent prefetches (`--prefetch`) download while the slots are busy and a slot that
frees starts its next command at once. Downloads go through the agent's snapshot cache
(`cache.py`), are retried while the server cannot be reached, and are all done before
anything is placed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.files import checkpoints, run_archive
from farmhand.runtime.files.cache import CACHE_DIR, SnapshotCache, place_inputs
from farmhand.runtime.files.parents import unpack_parents, wants_unpacked
from farmhand.runtime.files.run_archive import Staged, stat_identity

if TYPE_CHECKING:
    from farmhand.runtime.config import AgentConfig

__all__ = ["Prepared", "SnapshotSettings", "stage_snapshots"]

T = TypeVar("T")
#: Runs a call, retrying it while the server cannot be reached (or gives up by raising).
Retry = Callable[[Callable[[], T], str], T]


@dataclass
class SnapshotSettings:
    """An agent's settings for inputs, archives and checkpoints."""

    cache: SnapshotCache
    scratch: Path  # temporary tarballs: <workdir>/tmp
    max_extract_bytes: int
    max_extract_files: int
    checkpoint_interval: float  # seconds; run_args checkpoint_interval overrides
    keep_failed_workdir: bool = False

    @classmethod
    def of(cls, config: AgentConfig, workdir: Path, client: FarmhandClient) -> SnapshotSettings:
        """The settings an agent's `config` gives, its snapshot cache under `workdir`."""
        return cls(
            cache=SnapshotCache(workdir / CACHE_DIR, client, config.cache_limit),
            scratch=workdir / "tmp",
            max_extract_bytes=config.max_extract_bytes,
            max_extract_files=config.max_extract_files,
            checkpoint_interval=config.checkpoint_interval,
            keep_failed_workdir=config.keep_failed_workdir,
        )


@dataclass
class Prepared:
    """What staging left in the run directory."""

    staged: Staged  # inputs as placed, left out of the archive while unchanged
    checkpoint_dir: Path
    restored: bool  # an earlier attempt's checkpoint is in checkpoint_dir
    checkpoint_empty: bool  # checkpoint_dir was made by staging and nothing was put there
    checkpoint_interval: float


def stage_snapshots(
    client: FarmhandClient,
    lease: wire.Lease,
    run_dir: Path,
    settings: SnapshotSettings,
    retry: Retry,
) -> Prepared:
    """Fetch, then place, the lease's inputs, parents' archives and checkpoint.

    Raises ValueError for run_args that make no sense (the attempt fails), InputError for a
    snapshot that cannot be staged (the record is orphaned), and whatever `retry` gives up
    with when the server stays away.
    """
    every = checkpoints.interval(lease.run_args, settings.checkpoint_interval)
    unpack = wants_unpacked(lease.run_args)
    run_archive.wanted(lease.run_args)  # checked now: a typo fails the attempt at once
    run_archive.excludes(lease.run_args)
    wanted = set(lease.inputs.values())
    if unpack:
        wanted |= {p.archive for p in lease.parents if p.archive is not None}
    cache = settings.cache
    for sha256 in sorted(wanted):
        retry(lambda sha256=sha256: cache.fetch(sha256), f"download snapshot {sha256} for")
    place_inputs(run_dir, lease.inputs, cache)
    staged = {rel: stat_identity((run_dir / rel).lstat()) for rel in lease.inputs}
    if unpack:
        unpack_parents(
            run_dir,
            lease.parents,
            cache,
            max_bytes=settings.max_extract_bytes,
            max_files=settings.max_extract_files,
        )
    directory = run_dir / checkpoints.CHECKPOINT_DIR
    try:
        directory.mkdir()
        made = True
    except FileExistsError:  # an input or a parent's archive put it there
        made = False
    restored = False
    if lease.checkpoint is not None:
        sha256 = lease.checkpoint
        restored = retry(
            lambda: checkpoints.restore(
                client,
                sha256,
                directory,
                settings.scratch,
                max_bytes=settings.max_extract_bytes,
                max_files=settings.max_extract_files,
            ),
            f"restore checkpoint {sha256} for",
        )
    return Prepared(staged, directory, restored, made and not restored, every)
