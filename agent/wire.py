"""The wire contract between the farmhand server, its agents and its users' scripts.

Every request and response body that crosses HTTP is defined here, once, as a pydantic
model. The server imports this module; this module imports nothing from the server (the agent
must start fast on shared HPC filesystems and must not drag in fastapi or sqlalchemy).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

API_PREFIX = "/api/v1"

#: Limits every server enforces on submitted records (a server may lower them).
MAX_KEY_LENGTH = 256
MAX_COMMAND_LENGTH = 64 * 1024
MAX_RECORDS_PER_REQUEST = 10_000
MAX_TAIL_BYTES = 16 * 1024
MAX_CLAIM = 256
MAX_WAIT_SECONDS = 60.0
MAX_PARENTS = 1000
MAX_INPUTS = 1000
#: A snapshot's name: the lowercase hex sha256 of its bytes.
SHA256_PATTERN = r"^[0-9a-f]{64}$"
#: Campaign names, datasets and tags: letters, digits and `._-`, starting with a letter or digit.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class RecordState(str, Enum):
    """Where a record (one calculation) stands; transitions live in `farmhand.server.states`."""

    waiting = "waiting"
    ready = "ready"
    claimed = "claimed"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"
    orphaned = "orphaned"


#: States in which a record is held by a lease.
LEASED_STATES = (RecordState.claimed, RecordState.running)


class RunState(str, Enum):
    """Where one attempt (run) stands. `leased` and `running` are live; the rest are final."""

    leased = "leased"
    running = "running"
    done = "done"
    failed = "failed"
    lost = "lost"
    released = "released"
    cancelled = "cancelled"
    orphaned = "orphaned"


LIVE_RUN_STATES = (RunState.leased, RunState.running)


class Role(str, Enum):
    """What a bearer token may do."""

    admin = "admin"
    submitter = "submitter"
    agent = "agent"


def _is_name(value: str) -> bool:
    return value[0].isalnum() and all(c.isalnum() or c in "._-" for c in value)


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_input_path(path: str) -> str:
    """An input's place in the run directory: a relative POSIX path with no `..`, `.` or
    empty parts, no backslash or NUL, at most 1024 characters. Returns it; ValueError if not."""
    if not path or len(path) > 1024:
        raise ValueError(f"input path {path[:80]!r} must be 1-1024 characters")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"input path {path!r} must be relative, with / between parts")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"input path {path!r} may not have empty, '.' or '..' parts")
    return path


def check_inputs(value: dict[str, str]) -> dict[str, str]:
    """Validate `{path in the run directory: sha256}`; returns it sorted by path."""
    if len(value) > MAX_INPUTS:
        raise ValueError(f"at most {MAX_INPUTS} inputs per record, not {len(value)}")
    for path, digest in value.items():
        check_input_path(path)
        if not isinstance(digest, str) or not _is_sha256(digest):
            raise ValueError(f"input {path!r}: {digest!r} is not a lowercase hex sha256")
    paths = set(value)
    for path in paths:  # "a" and "a/b" cannot both be files
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise ValueError(f"input {path!r} lies inside input {'/'.join(parts[:i])!r}")
    return dict(sorted(value.items()))


class Strict(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class Loose(BaseModel):
    """Response bodies ignore unknown fields, so an older client survives a newer server."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)


T = TypeVar("T")


class Page(Loose, Generic[T]):
    """One page of a keyset-paginated listing; pass `next` as `after` to get the following page."""

    items: list[T]
    next: int | None = None


class ErrorBody(Loose):
    """Every 4xx/5xx answer: a one-line message naming the problem, plus a machine code."""

    detail: str
    code: str = "error"
    errors: list[dict[str, Any]] | None = None


# --- campaigns ---------------------------------------------------------------------------


class CampaignCreate(Strict):
    """A new campaign; its version is one more than the highest of the same name."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    software: str | None = Field(default=None, max_length=200)
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="run_args every record inherits"
    )
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


# --- records -----------------------------------------------------------------------------


class RecordSpec(Strict):
    """One calculation to submit."""

    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    command: str = Field(min_length=1, max_length=MAX_COMMAND_LENGTH)
    priority: int = Field(default=0, description="higher is claimed first, then submission order")
    run_args: dict[str, Any] = Field(default_factory=dict)
    parents: list[str | int] = Field(
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
        for tag in value:
            if not tag or len(tag) > 100 or not _is_name(tag):
                raise ValueError(f"tag {tag!r} must be 1-100 letters, digits or ._- characters")
        return sorted(set(value))

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("command is blank")
        return value


class RecordsCreate(Strict):
    """Bulk submission into one campaign.

    A key already in the campaign is skipped (the default); with `force` a record that is not
    done gets the new spec and is re-queued; a done one is rerun only with
    `force_ignores_success` as well.
    """

    campaign_id: int
    records: list[RecordSpec] = Field(min_length=1, max_length=MAX_RECORDS_PER_REQUEST)
    force: bool = False
    force_ignores_success: bool = False


class RecordsCreated(Loose):
    """What a bulk submission did."""

    created: int
    skipped: int
    replaced: int = Field(default=0, description="existing records given the new spec (force)")
    skipped_keys: list[str] = Field(default_factory=list, description="at most the first 100")


class Run(Loose):
    """One attempt of a record by one agent under one lease."""

    id: int
    record_id: int
    agent_id: int | None = None
    attempt: int
    state: RunState
    claimed_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    run_args: dict[str, Any] | None = Field(
        default=None, description="temporary run_args this attempt ran with (from a retry)"
    )
    archive: str | None = Field(
        default=None, description="sha256 of the run directory's tar.gz, once uploaded"
    )
    checkpoint: str | None = Field(
        default=None, description="sha256 of this run's newest checkpoint, if it saved one"
    )


class Record(Loose):
    """A calculation as the server holds it."""

    id: int
    campaign_id: int
    key: str
    command: str
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
    result: dict[str, Any] | list[Any] | None = None
    created_at: datetime
    updated_at: datetime
    runs: list[Run] | None = Field(default=None, description="only on GET /records/{id}")


class RecordIds(Strict):
    """Records to cancel or retry."""

    ids: list[int] = Field(min_length=1, max_length=MAX_RECORDS_PER_REQUEST)


class RecordsRetry(Strict):
    """Re-queue records: by id, or every orphan (of one campaign).

    Failed, cancelled and orphaned records are retried; others are skipped with the reason,
    unless `force` (re-queue records that are waiting, ready or leased: a live run is
    cancelled) and `force_ignores_success` (rerun done records as well). `run_args` are
    temporary: they apply until the record ends again, and each run keeps the set it ran with.
    """

    ids: list[int] = Field(default_factory=list, max_length=MAX_RECORDS_PER_REQUEST)
    orphans: bool = Field(default=False, description="also every orphaned record")
    campaign_id: int | None = Field(default=None, description="limits `orphans`")
    force: bool = False
    force_ignores_success: bool = False
    run_args: dict[str, Any] | None = None


class Skipped(Loose):
    """A record an operation left alone, and why."""

    id: int
    key: str
    reason: str


class RecordsChanged(Loose):
    """Records a cancel or retry changed, and the ones it skipped."""

    changed: list[int]
    skipped: list[Skipped] = Field(default_factory=list)
    reopened: int = Field(
        default=0, description="descendants that had failed upstream, waiting again"
    )


# --- agents, leases and runs -------------------------------------------------------------


class Resources(Strict):
    """Amounts of cores, GPUs and memory (MiB); None = unknown/unlimited."""

    cores: float | None = None
    gpus: int | None = None
    memory_mb: int | None = None


class AgentRegister(Strict):
    """An agent introducing itself."""

    name: str = Field(min_length=1, max_length=200)
    host: str = Field(min_length=1, max_length=255)
    pid: int | None = None
    slots: int = Field(ge=1, le=100_000)
    labels: dict[str, str] = Field(default_factory=dict)
    runners: list[str] = Field(default_factory=list, description="runner names it offers")
    resources: Resources | None = Field(default=None, description="its total resources")


class AgentStatus(Loose):
    """What an agent says about itself with each heartbeat; shown by `farmhand ls agents`.

    Loose on purpose, in both directions: a newer agent's extra fields must not make an older
    server refuse the heartbeat that renews its leases.
    """

    paused: str | None = Field(
        default=None, max_length=500, description="why the agent claims nothing now, if it does not"
    )
    disk_used_percent: float | None = Field(default=None, ge=0, le=100)
    walltime_left: float | None = Field(
        default=None, description="seconds until the agent's batch job ends; None = unlimited"
    )
    outbox: int = Field(default=0, ge=0, description="finished runs whose reports wait to be sent")


class Agent(Loose):
    """A registered worker process."""

    id: int
    name: str
    host: str
    pid: int | None = None
    slots: int
    state: str
    registered_at: datetime
    last_heartbeat: datetime
    running: int = 0
    status: AgentStatus | None = None
    runners: list[str] | None = Field(
        default=None, description="runner names it offers; None = it did not say (any)"
    )
    resources: Resources | None = Field(
        default=None, description="its total resources; None = it did not say (unlimited)"
    )


class StuckRecords(Loose):
    """Ready records no live agent can take, and why (`farmhand status`, `GET /status`).

    A record can be counted under several reasons (it may need both a GPU and more memory
    than any agent offering its runner has).
    """

    reason: str = Field(
        description="no_live_agent; runner; cores, gpus or memory_mb (more than the largest "
        "live agent offering its runner holds); combination (each amount fits some agent, "
        "no one agent holds them all); other (the rest, past the groups read)"
    )
    count: int
    message: str = Field(description="one line for people, naming the numbers")
    runner: str | None = Field(
        default=None, description="the runner, when the reason is tied to it"
    )
    needed: float | None = Field(default=None, description="the most any of them asks for")
    largest: float | None = Field(
        default=None, description="the most a live agent (offering the runner) has"
    )


class FarmStatus(Loose):
    """Ready work and the agents that could take it."""

    ready: int = Field(description="ready records, over every campaign")
    agents: dict[str, int] = Field(
        default_factory=dict, description="agents not stopped: live, draining, stale"
    )
    stuck: list[StuckRecords] = Field(default_factory=list)


class AgentRegistered(Loose):
    """The server's answer to a registration: who the agent is and how long leases last."""

    agent: Agent
    lease_ttl: float


class Heartbeat(Strict):
    """The runs an agent holds (one request renews all their leases) and how it is doing."""

    run_ids: list[int] = Field(default_factory=list, max_length=100_000)
    status: AgentStatus | None = None


class HeartbeatAck(Loose):
    """Which held runs to stop: `cancel` were cancelled by a user, `lost` are no longer ours."""

    renewed: int
    lease_expires_at: datetime
    cancel: list[int] = Field(default_factory=list)
    lost: list[int] = Field(default_factory=list)


class ClaimRequest(Strict):
    """Ask for up to `max_records` leases; wait up to `wait` seconds for work to appear."""

    agent_id: int
    max_records: int = Field(default=1, ge=1, le=MAX_CLAIM)
    wait: float = Field(default=0.0, ge=0.0, le=MAX_WAIT_SECONDS)
    campaign_id: int | None = Field(default=None, description="one campaign (see campaign_ids)")
    campaign_ids: list[int] | None = Field(
        default=None, max_length=1000, description="only records of these campaigns"
    )
    datasets: list[str] | None = Field(
        default=None, max_length=1000, description="only records of these datasets"
    )

    runners: list[str] | None = Field(
        default=None, description="runner names the agent offers; None = any"
    )
    free: Resources | None = Field(
        default=None, description="what fits in the agent's free share now"
    )
    walltime_left: float | None = Field(
        default=None,
        ge=0.0,
        description="seconds the agent has left (its batch job's end minus a margin); only "
        "records whose run_args walltime fits are wanted; None = unlimited",
    )


class ParentResult(Loose):
    """A parent of a leased record: its key and result document (`results.json`)."""

    record_id: int
    key: str
    result: dict[str, Any] | list[Any] | None = None
    archive: str | None = Field(
        default=None, description="sha256 of the output archive of its successful run"
    )


class Lease(Loose):
    """The right of one run to work on one record until `expires_at`; fenced by `token`."""

    run_id: int
    token: str
    expires_at: datetime
    record_id: int
    campaign_id: int
    key: str
    command: str
    attempt: int
    run_args: dict[str, Any] = Field(default_factory=dict, description="the effective set")
    parents: list[ParentResult] = Field(default_factory=list)
    inputs: dict[str, str] = Field(
        default_factory=dict, description="{path in the run directory: snapshot sha256}"
    )
    checkpoint: str | None = Field(
        default=None,
        description="sha256 of the record's newest checkpoint (from an earlier attempt), "
        "restored into $FARMHAND_CHECKPOINT_DIR before the command starts",
    )


class Leases(Loose):
    """Leases handed out by one claim (possibly none)."""

    leases: list[Lease]


class RunStart(Strict):
    """The agent has staged the run and started its command."""

    token: str


class RunComplete(Strict):
    """The command exited 0 (and any `results.json` parsed)."""

    token: str
    exit_code: int = 0
    result: dict[str, Any] | list[Any] | None = None
    stdout_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    stderr_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    archive: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="sha256 of the run directory's tar.gz, uploaded before this report",
    )


class RunFail(Strict):
    """The attempt failed; the record is retried while attempts remain."""

    token: str
    error: str = Field(min_length=1, max_length=4096)
    exit_code: int | None = None
    stdout_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    stderr_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    archive: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="sha256 of the run directory's tar.gz, uploaded before this report",
    )


class RunRelease(Strict):
    """Give the record back without spending an attempt (agent shutdown)."""

    token: str
    reason: str = Field(default="released by agent", max_length=1024)


class RunOrphan(Strict):
    """The agent cannot run the record as specified (unknown runner, missing input, the run
    directory cannot be staged): the record is kept as `orphaned` with the reason, and no
    attempt is spent."""

    token: str
    reason: str = Field(min_length=1, max_length=4096)


class RunAck(Loose):
    """The answer to start/complete/fail/release: the run and its record as they now stand."""

    run_id: int
    run_state: RunState
    record_id: int
    record_state: RecordState
    attempts: int


class RunReport(Strict):
    """One item of a batch report: a completion (no `error`) or a failure (with `error`)."""

    run_id: int
    token: str
    exit_code: int | None = None
    error: str | None = Field(default=None, min_length=1, max_length=4096)
    result: dict[str, Any] | list[Any] | None = None
    stdout_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    stderr_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    archive: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="sha256 of the run directory's tar.gz, uploaded before this report",
    )


class RunReports(Strict):
    """Many final reports in one request; each is fenced and answered on its own."""

    reports: list[RunReport] = Field(min_length=1, max_length=MAX_CLAIM * 4)


class RunReportAnswer(Loose):
    """The answer to one item: `ack` when it was applied (or replayed), else `error`."""

    run_id: int
    ack: RunAck | None = None
    error: ErrorBody | None = None


class RunReportAnswers(Loose):
    """Per-item answers, in the order of the request."""

    answers: list[RunReportAnswer]


class CheckpointCreate(Strict):
    """Attach an uploaded checkpoint snapshot to a live run; the record's next attempt
    restores the newest one."""

    token: str
    sha256: str = Field(pattern=SHA256_PATTERN)


class Checkpoint(Loose):
    """A checkpoint of a record, saved by one of its runs."""

    id: int
    record_id: int
    run_id: int
    sha256: str
    created_at: datetime


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


# --- tokens ------------------------------------------------------------------------------


class TokenCreate(Strict):
    """A new bearer token."""

    role: Role
    name: str = Field(default="", max_length=200)


class TokenCreated(Loose):
    """The only time the secret is shown: the server keeps only its hash."""

    id: int
    role: Role
    name: str
    token: str


class Health(Loose):
    """`/healthz`: the server is up and its database answers."""

    status: str
    version: str
    database: str


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
    version: int = Field(ge=1)
    software: str | None = Field(default=None, max_length=200)
    defaults: dict[str, Any] = Field(default_factory=dict)
    based_on: str | None = Field(default=None, max_length=220, description="`NAME:VERSION`")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class BundleCheckpoint(Strict):
    """A checkpoint a run saved."""

    sha256: str = Field(pattern=SHA256_PATTERN)
    created_at: datetime


class BundleRun(Strict):
    """One attempt as a bundle carries it. Imported runs get fresh ids and lease tokens and
    no agent; `id` is the run's id on the server it came from (`result_run` names it)."""

    id: int
    attempt: int = Field(ge=0)
    state: RunState
    claimed_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    run_args: dict[str, Any] | None = None
    archive: str | None = Field(default=None, pattern=SHA256_PATTERN)
    checkpoints: list[BundleCheckpoint] = Field(default_factory=list)


class BundleParent(Strict):
    """A parent outside the bundle's campaign: `campaign` is its `NAME:VERSION`."""

    campaign: str = Field(min_length=1, max_length=220)
    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)


class BundleRecord(Strict):
    """A record with its runs. Its spec — command, run_args, inputs, parents, dataset,
    tags — decides on import whether it is the same calculation as one already there."""

    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    command: str = Field(min_length=1, max_length=MAX_COMMAND_LENGTH)
    priority: int = 0
    run_args: dict[str, Any] = Field(default_factory=dict)
    temporary_run_args: dict[str, Any] | None = None
    dataset: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=64)
    parents: list[str] = Field(
        default_factory=list, max_length=MAX_PARENTS, description="keys in the same campaign"
    )
    outside_parents: list[BundleParent] = Field(default_factory=list, max_length=MAX_PARENTS)
    inputs: dict[str, str] = Field(default_factory=dict)
    state: RecordState
    attempts: int = Field(ge=0)
    max_attempts: int = Field(ge=1)
    error: str | None = None
    result: dict[str, Any] | list[Any] | None = None
    result_run: int | None = Field(default=None, description="`id` of the run it came from")
    created_at: datetime
    runs: list[BundleRun] = Field(default_factory=list)

    @field_validator("inputs")
    @classmethod
    def _inputs_are_staged_files(cls, value: dict[str, str]) -> dict[str, str]:
        return check_inputs(value)

    @field_validator("tags")
    @classmethod
    def _tags_sorted(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

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
