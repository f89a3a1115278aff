"""Records: what users submit and read back (campaigns are in `campaigns.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from farmhand.wire.base import (
    MAX_COMMAND_LENGTH,
    MAX_ERROR_LENGTH,
    MAX_INT,
    MAX_KEY_LENGTH,
    MAX_PARENTS,
    MAX_RECORDS_PER_REQUEST,
    MAX_TAIL_BYTES,
    NAME_PATTERN,
    SHA256_PATTERN,
    Document,
    Id,
    Int,
    Loose,
    RecordState,
    RunState,
    Strict,
    check_inputs,
    check_tags,
)
from farmhand.wire.campaigns import CampaignCreate
from farmhand.wire.params import MAX_PARAMS, Params, parse_where
from farmhand.wire.runargs import RunArgs

# --- records -----------------------------------------------------------------------------


class RecordSpec(Strict):
    """One calculation to submit."""

    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    command: str = Field(min_length=1, max_length=MAX_COMMAND_LENGTH)
    params: Params = Field(
        default_factory=dict,
        description="name -> string, number or boolean; the run sees params.json and "
        "FARMHAND_PARAM_<NAME> variables",
        examples=[{"T": 600, "a": 4.05}],
    )
    priority: Int = Field(default=0, description="higher is claimed first, then submission order")
    run_args: RunArgs = Field(
        default_factory=dict,
        description="overrides of the campaign's defaults; the ones farmhand reads (timeout, "
        "walltime, max_attempts, cores, …) are checked here",
    )
    parents: list[str | Id] = Field(
        default_factory=list,
        max_length=MAX_PARENTS,
        description="keys (same campaign) or ids of records that must be done first",
    )
    dataset: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=64)
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="files staged into the run directory: {relative path: snapshot sha256}; "
        "every snapshot must be uploaded first",
        examples=[{"relax.py": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}],
    )

    @field_validator("inputs")
    @classmethod
    def _inputs_are_staged_files(cls, value: dict[str, str]) -> dict[str, str]:
        return check_inputs(value)

    @field_validator("tags")
    @classmethod
    def _tags_are_names(cls, value: list[str]) -> list[str]:
        return check_tags(value)

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("command is blank")
        return value


class RecordsCreate(Strict):
    """Bulk submission into one campaign: an existing one (`campaign_id`) or a new one
    (`campaign`, created in the same transaction, so a refused submission leaves none).

    A key already in the campaign is skipped (the default). With `force`, one whose stored
    spec differs from the submitted one takes the new spec and is re-queued, unless it is done
    (then `force_ignores_success` as well); an unchanged one is skipped (`retry` reruns it).
    `dry_run` checks everything and answers what would happen, changing nothing (input
    snapshots need not be uploaded yet).
    """

    campaign_id: Id | None = None
    campaign: CampaignCreate | None = Field(
        default=None, description="instead of campaign_id: create this campaign with the records"
    )
    records: list[RecordSpec] = Field(min_length=1, max_length=MAX_RECORDS_PER_REQUEST)
    force: bool = False
    force_ignores_success: bool = False
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_campaign(self) -> RecordsCreate:
        if (self.campaign_id is None) == (self.campaign is None):
            raise ValueError("give either campaign_id or campaign")
        return self


class SpecDiffers(Loose):
    """A record a submission skipped although its spec differs from the stored one."""

    key: str
    fields: list[str] = Field(description="command, params, run_args, priority, dataset, …")


class RecordsCreated(Loose):
    """What a bulk submission did (with `dry_run`: would do)."""

    created: int
    skipped: int
    replaced: int = Field(default=0, description="existing records given the new spec (force)")
    replaced_keys: list[str] = Field(default_factory=list, description="at most the first 100")
    skipped_keys: list[str] = Field(default_factory=list, description="at most the first 100")
    differing: int = Field(
        default=0, description="skipped records whose submitted spec differs from the stored one"
    )
    differs: list[SpecDiffers] = Field(
        default_factory=list, description="the first 100 of them, with the fields that differ"
    )
    created_campaign: int | None = Field(
        default=None,
        description="the id of the campaign this submission created from `campaign` (null: "
        "the records went to `campaign_id`, or it was a dry run)",
    )
    dry_run: bool = False


class RunFields(BaseModel):
    """What an attempt is, as the API shows it (`Run`) and a bundle carries it (`BundleRun`)."""

    model_config = ConfigDict(defer_build=True)  # built on first use, as Strict and Loose are

    attempt: int = Field(ge=0, le=MAX_INT)
    state: RunState
    claimed_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: Int | None = None
    error: str | None = Field(default=None, max_length=MAX_ERROR_LENGTH)
    stdout_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    stderr_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    run_args: Document | None = Field(
        default=None, description="temporary run_args this attempt ran with (from a retry)"
    )
    archive: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="sha256 of the run directory's tar.gz, once uploaded",
    )


class Run(RunFields, Loose):
    """One attempt of a record by one agent under one lease."""

    id: int
    record_id: int
    agent_id: int | None = None
    checkpoint: str | None = Field(
        default=None, description="sha256 of this run's newest checkpoint, if it saved one"
    )


class Record(Loose):
    """A calculation as the server holds it."""

    id: int
    campaign_id: int
    key: str
    command: str
    params: dict[str, bool | int | float | str] = Field(default_factory=dict)
    priority: int
    run_args: dict[str, Any] = Field(default_factory=dict)
    temporary_run_args: dict[str, Any] | None = Field(
        default=None, description="given by a retry; used until the record ends again"
    )
    derived_run_args: dict[str, Any] = Field(
        default_factory=dict,
        description="the effective set: campaign defaults, then run_args, then temporary ones",
    )
    dataset: str | None = None
    tags: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list, description="keys of its parents")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="{path in the run directory: snapshot sha256}"
    )
    children: list[str] | None = Field(default=None, description="only on GET /records/{id}")
    state: RecordState
    attempts: int
    max_attempts: int
    error: str | None = None
    not_before: datetime | None = Field(
        default=None,
        description="a ready record is not claimed before this moment: the wait after a "
        "failed attempt (run_args `retry_delay`)",
    )
    result: dict[str, Any] | list[Any] | None = None
    created_at: datetime
    updated_at: datetime
    runs: list[Run] | None = Field(default=None, description="only on GET /records/{id}")


class RecordFilter(Strict):
    """The records of one campaign a bulk cancel or retry acts on: those matching every
    filter given, in id order after `after`, at most `MAX_RECORDS_PER_REQUEST` a request (the
    answer's `next` continues)."""

    campaign_id: Id
    state: RecordState | None = None
    dataset: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN)
    key_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="keys starting with this: `relax-01` matches `relax-010` … `relax-019`",
    )
    tag: str | None = Field(
        default=None, max_length=200, pattern=NAME_PATTERN, description="records with this tag"
    )
    where: list[str] = Field(
        default_factory=list, max_length=MAX_PARAMS, description="filters on params: `T>=600`"
    )
    after: Id | None = Field(default=None, description="the previous answer's `next`")

    @field_validator("where")
    @classmethod
    def _filters_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_where(text)
        return value


class RecordCount(Loose):
    """How many records a filter matches (`POST /records/count`), by state: what a cancel or
    retry with the same filter would look at."""

    total: int
    states: dict[RecordState, int] = Field(default_factory=dict)
    last: int | None = Field(
        default=None, description="the highest matching id (None: nothing matches)"
    )


class RecordIds(Strict):
    """Records to cancel: by id, or every record a filter matches (one of the two)."""

    ids: list[Id] = Field(default_factory=list, max_length=MAX_RECORDS_PER_REQUEST)
    filter: RecordFilter | None = None

    @model_validator(mode="after")
    def _ids_or_filter(self) -> RecordIds:
        if bool(self.ids) == (self.filter is not None):
            raise ValueError("give either ids or a filter")
        return self


class RecordsRetry(Strict):
    """Re-queue records: by id, by a filter, or every orphan (of one campaign).

    Failed, cancelled and orphaned records are retried; others are skipped with the reason,
    unless `force` (re-queue records that are waiting, ready or leased: a live run is
    cancelled) and `force_ignores_success` (rerun done records as well). `run_args` are
    temporary: they apply until the record ends again, and each run keeps the set it ran with.
    """

    ids: list[Id] = Field(default_factory=list, max_length=MAX_RECORDS_PER_REQUEST)
    filter: RecordFilter | None = Field(
        default=None, description="instead of ids: the records this filter matches"
    )
    orphans: bool = Field(default=False, description="also every orphaned record")
    campaign_id: Id | None = Field(default=None, description="limits `orphans`")
    force: bool = False
    force_ignores_success: bool = False
    run_args: RunArgs | None = None


class Skipped(Loose):
    """A record an operation left alone, and why."""

    id: int
    key: str
    reason: str


class RecordsChanged(Loose):
    """Records a cancel or retry changed, and the ones it skipped."""

    changed: list[int]
    skipped: list[Skipped] = Field(default_factory=list)
    next: int | None = Field(
        default=None,
        description="with a filter: more records may match after this id; send it as "
        "`filter.after`",
    )
    reopened: int = Field(
        default=0, description="descendants that had failed upstream, waiting again"
    )


class Ended(Loose):
    """Records of a campaign that ended (done, failed, cancelled, orphaned) since a cursor
    (`GET /campaigns/{id}/ended`), in the order they were first seen ended."""

    items: list[Record]
    cursor: str = Field(description="pass it back as `cursor` to read what ends next")
    more: bool = Field(description="more have ended already: ask again at once")
    finished: bool | None = Field(
        default=None,
        description="no record of the campaign is waiting, ready, claimed or running: "
        "nothing more will end unless records are added or retried (given when `more` is "
        "false)",
    )
