"""Snapshots: immutable bytes addressed by their sha256."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from farmhand.wire.base import SHA256_PATTERN, ErrorBody, Loose, Strict

#: `POST /snapshots/batch`: at most this many snapshots in one request...
MAX_BATCH_PARTS = 256
#: ...of at most this many bytes together (the parts, not counting the header line).
MAX_BATCH_BYTES = 16 * 1024 * 1024
#: The media type of a batch body: the `SnapshotBatch` JSON, a newline, then the parts' bytes
#: back to back in the order the JSON lists them.
BATCH_MEDIA_TYPE = "application/x-farmhand-snapshots"

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


class SnapshotPart(Strict):
    """One snapshot of a batch upload: its name, its length in the body, and for agent
    tokens the live run it belongs to (`<run id>:<lease token>`, as `X-Farmhand-Lease`)."""

    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int = Field(ge=0, le=MAX_BATCH_BYTES, description="bytes of this part in the body")
    lease: str | None = Field(default=None, max_length=200)


class SnapshotBatch(Strict):
    """The header line of `POST /snapshots/batch`: the parts that follow it, in order."""

    parts: list[SnapshotPart] = Field(min_length=1, max_length=MAX_BATCH_PARTS)


class SnapshotPartStored(Loose):
    """The answer for one part: `created` (True: stored now, False: held already), or
    `error` when this part was refused (the others are not affected)."""

    sha256: str
    created: bool | None = None
    error: ErrorBody | None = None


class SnapshotBatchStored(Loose):
    """Per-part answers, in the order of the request."""

    parts: list[SnapshotPartStored]
