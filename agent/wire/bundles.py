"""Bundles: a campaign exported from one server and imported into another."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from farmhand.wire.base import (
    MAX_COMMAND_LENGTH,
    MAX_ERROR_LENGTH,
    MAX_INT,
    MAX_KEY_LENGTH,
    MAX_PARENTS,
    NAME_PATTERN,
    SHA256_PATTERN,
    Document,
    Id,
    Int,
    Loose,
    RecordState,
    ResultDocument,
    Strict,
    check_inputs,
    check_tags,
)
from farmhand.wire.params import Params
from farmhand.wire.records import RunFields

# --- bundles -----------------------------------------------------------------------------
# Export/import of a campaign between servers (`farmhand export` / `farmhand import`), and
# the backup of a whole server. A bundle item is the same model on the way out (an export
# page) and on the way in (an import chunk), so what one server writes another reads.

#: Records in one import request (the CLI also keeps each request's body well under the
#: server's body limit).
MAX_BUNDLE_RECORDS = 1000
#: What `bundle.json` inside a bundle tar says it is.
BUNDLE_FORMAT = "farmhand-bundle"
BUNDLE_VERSION = 1


class BundleCampaign(Strict):
    """A campaign as a bundle carries it; matched on import by `name` and `version`."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    version: int = Field(ge=1, le=MAX_INT)
    software: str | None = Field(default=None, max_length=200)
    defaults: Document = Field(default_factory=dict)
    based_on: str | None = Field(default=None, max_length=220, description="`NAME:VERSION`")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class BundleCheckpoint(Strict):
    """A checkpoint a run saved."""

    sha256: str = Field(pattern=SHA256_PATTERN)
    created_at: datetime


class BundleRun(RunFields, Strict):
    """One attempt as a bundle carries it (the fields of `Run` it shares, and its
    checkpoints). Imported runs get fresh ids and lease tokens and no agent; `id` is the
    run's id on the server it came from (`result_run` names it)."""

    id: Id
    checkpoints: list[BundleCheckpoint] = Field(default_factory=list)


class BundleParent(Strict):
    """A parent outside the bundle's campaign: `campaign` is its `NAME:VERSION`."""

    campaign: str = Field(min_length=1, max_length=220)
    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)


class BundleRecord(Strict):
    """A record with its runs. Its spec — command, params, run_args, inputs, parents, dataset,
    tags — decides on import whether it is the same calculation as one already there."""

    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    command: str = Field(min_length=1, max_length=MAX_COMMAND_LENGTH)
    params: Params = Field(default_factory=dict)
    priority: Int = 0
    run_args: Document = Field(default_factory=dict)
    temporary_run_args: Document | None = None
    dataset: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=64)
    parents: list[str] = Field(
        default_factory=list, max_length=MAX_PARENTS, description="keys in the same campaign"
    )
    outside_parents: list[BundleParent] = Field(default_factory=list, max_length=MAX_PARENTS)
    inputs: dict[str, str] = Field(default_factory=dict)
    state: RecordState
    attempts: int = Field(ge=0, le=MAX_INT)
    max_attempts: int = Field(ge=1, le=MAX_INT)
    error: str | None = Field(default=None, max_length=2 * MAX_ERROR_LENGTH)
    result: ResultDocument | None = None
    result_run: Id | None = Field(default=None, description="`id` of the run it came from")
    created_at: datetime
    runs: list[BundleRun] = Field(default_factory=list)

    @field_validator("inputs")
    @classmethod
    def _inputs_are_staged_files(cls, value: dict[str, str]) -> dict[str, str]:
        return check_inputs(value)

    @field_validator("tags")
    @classmethod
    def _tags_sorted(cls, value: list[str]) -> list[str]:
        return check_tags(value)

    def snapshots(self) -> set[str]:
        """Every snapshot it references: inputs, run archives, checkpoints."""
        found = set(self.inputs.values())
        for run in self.runs:
            found.update(c.sha256 for c in run.checkpoints)
            if run.archive:
                found.add(run.archive)
        return found


class BundlePage(Loose):
    """One page of a campaign's export, records in id order; `next` is the following
    page's `after`."""

    campaign: BundleCampaign
    records: list[BundleRecord]
    next: int | None = None


class BundleImport(Strict):
    """One chunk of an import: records (parents before children, or already on the server)
    merged into the campaign `name`:`version`, created when missing."""

    campaign: BundleCampaign
    records: list[BundleRecord] = Field(default_factory=list, max_length=MAX_BUNDLE_RECORDS)


class BundleConflict(Loose):
    """A record the import left untouched: the server's has the same key, another spec."""

    key: str
    differs: list[str] = Field(description="spec fields that differ, e.g. command, inputs")


class BundleImported(Loose):
    """What one import chunk did."""

    campaign_id: int
    campaign_created: bool = False
    created: int = Field(default=0, description="records new to this server, with their runs")
    merged: int = Field(
        default=0, description="records not done here, done in the bundle: took its result"
    )
    unchanged: int = 0
    conflicts: list[BundleConflict] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="e.g. campaign settings differ")
