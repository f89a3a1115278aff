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


class RunFail(Strict):
    """The attempt failed; the record is retried while attempts remain."""

    token: str
    error: str = Field(min_length=1, max_length=4096)
    exit_code: int | None = None
    stdout_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    stderr_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)


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
