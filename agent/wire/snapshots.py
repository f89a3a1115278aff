"""Snapshots: immutable bytes addressed by their sha256."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from farmhand.wire.base import Loose

# --- snapshots ---------------------------------------------------------------------------


class Snapshot(Loose):
    """Immutable bytes addressed by their sha256: an input, an output archive, a checkpoint."""

    sha256: str
    size: int = Field(description="bytes")
    created_at: datetime
    references: int | None = Field(
        default=None,
        description="record inputs, run archives and checkpoints naming it (listings only)",
    )


class SnapshotPage(Loose):
    """One page of snapshots in sha256 order; pass `next` as `after` for the following page."""

    items: list[Snapshot]
    next: str | None = None


class SnapshotStored(Loose):
    """The answer to an upload: the snapshot, and whether this upload created it."""

    snapshot: Snapshot
    created: bool
