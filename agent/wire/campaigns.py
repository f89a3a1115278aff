"""Campaigns: named, versioned groups of records, and their failures grouped by cause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from farmhand.wire.base import NAME_PATTERN, Loose, RecordState, Strict
from farmhand.wire.runargs import RunArgs


class CampaignCreate(Strict):
    """A new campaign; its version is one more than the highest of the same name."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    software: str | None = Field(default=None, max_length=200)
    defaults: RunArgs = Field(default_factory=dict, description="run_args every record inherits")
    based_on: str | None = Field(
        default=None,
        max_length=220,
        description="the campaign this one follows, `NAME:VERSION` (or `NAME`: its latest)",
        examples=["relax:3"],
    )


class Campaign(Loose):
    """A named, versioned group of records with its counts by state."""

    id: int
    name: str
    version: int
    software: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    based_on: str | None = Field(default=None, description="`NAME:VERSION` it follows")
    created_at: datetime
    started_at: datetime | None = Field(default=None, description="first claim")
    finished_at: datetime | None = Field(
        default=None, description="when its last unfinished record ended; reset by new work"
    )
    counts: dict[RecordState, int] = Field(default_factory=dict)
    params: list[str] = Field(
        default_factory=list, description="the names of its records' params, sorted"
    )
    archived_at: datetime | None = Field(
        default=None, description="when it was archived: hidden from listings unless asked"
    )
    created_by: int | None = Field(
        default=None, description="the id of the token that created it (it may delete it)"
    )


class CampaignDeleted(Loose):
    """What deleting a campaign removed (its snapshots stay: other records may share them)."""

    campaign_id: int
    name: str
    version: int
    records: int
    runs: int
    cancelled: int = Field(description="live runs stopped first (`force`)")
    unlinked: list[str] = Field(
        default_factory=list,
        description="`NAME:VERSION` of campaigns based on it, whose `based_on` is now empty",
    )


class FailedRecord(Loose):
    """A failed record, named."""

    id: int
    key: str


class FailureGroup(Loose):
    """Failed records with one cause: the same error and last stderr line once numbers,
    paths and hex ids are masked."""

    signature: str
    count: int
    error: str | None = Field(default=None, description="the newest one's error")
    stderr_tail: str | None = Field(default=None, description="the newest one's stderr tail")
    records: list[FailedRecord] = Field(description="the newest of them (a page: 50 unless asked)")
    next: int | None = Field(default=None, description="more follow: pass as `after`")


class FailureGroups(Loose):
    """A campaign's failed records by cause, biggest group first; `scanned` of the `failed`
    were read (the newest)."""

    campaign_id: int
    failed: int
    scanned: int
    groups: list[FailureGroup]
