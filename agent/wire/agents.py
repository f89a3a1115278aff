"""Agents, the leases they claim and the runs they report."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from farmhand.wire.base import (
    MAX_CLAIM,
    MAX_ERROR_LENGTH,
    MAX_INT,
    MAX_TAIL_BYTES,
    MAX_WAIT_SECONDS,
    SHA256_PATTERN,
    ErrorBody,
    Id,
    Int,
    Loose,
    RecordState,
    ResultDocument,
    RunState,
    Strict,
)

# --- agents, leases and runs -------------------------------------------------------------


class Resources(Strict):
    """Amounts of cores, GPUs and memory (MiB); None = unknown/unlimited."""

    cores: float | None = None
    gpus: int | None = Field(default=None, ge=0, le=MAX_INT)
    memory_mb: int | None = Field(default=None, ge=0, le=MAX_INT)


class AgentRegister(Strict):
    """An agent introducing itself."""

    name: str = Field(min_length=1, max_length=200)
    host: str = Field(min_length=1, max_length=255)
    pid: int | None = Field(default=None, ge=0, le=MAX_INT)
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
    broken_runners: dict[str, str] = Field(
        default_factory=dict,
        max_length=1000,
        description="runners the agent stopped offering, and why: they could not start "
        "commands several times in a row (a container engine's error, a missing program)",
    )


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
        description="no_live_agent; runner; cores, gpus, memory_mb or walltime (more than the "
        "largest live agent offering its runner holds, or has left); combination (each "
        "amount fits some agent, no one agent holds them all); other (the rest, past the "
        "groups read)"
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
    claims_keep_alive: bool = Field(
        default=False,
        description="the server counts the agent's claims as heartbeats: an agent that "
        "holds no lease and claims at least every lease_ttl / 2 stays live without them "
        "(False from servers older than this field)",
    )


class Heartbeat(Strict):
    """The runs an agent holds (one request renews all their leases) and how it is doing."""

    run_ids: list[Id] = Field(default_factory=list, max_length=100_000)
    status: AgentStatus | None = None


class HeartbeatAck(Loose):
    """Which held runs to stop: `cancel` were cancelled by a user, `lost` are no longer ours."""

    renewed: int
    lease_expires_at: datetime
    cancel: list[int] = Field(default_factory=list)
    lost: list[int] = Field(default_factory=list)


class ClaimRequest(Strict):
    """Ask for up to `max_records` leases; wait up to `wait` seconds for work to appear."""

    agent_id: Id
    max_records: int = Field(default=1, ge=1, le=MAX_CLAIM)
    wait: float = Field(default=0.0, ge=0.0, le=MAX_WAIT_SECONDS)
    campaign_id: Id | None = Field(default=None, description="one campaign (see campaign_ids)")
    campaign_ids: list[Id] | None = Field(
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
    params: dict[str, bool | int | float | str] = Field(default_factory=dict)
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


class RunStartItem(Strict):
    """One run whose command the agent has started."""

    run_id: Id
    token: str


class RunStarts(Strict):
    """Many starts in one request: an agent sends what gathered while the commands already
    ran (`POST /runs/starts`); each is fenced and answered on its own (`RunReportAnswers`)."""

    starts: list[RunStartItem] = Field(min_length=1, max_length=MAX_CLAIM * 4)


class RunOutputs(Strict):
    """What every final report may carry: the command's output tails and the run's archive."""

    stdout_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    stderr_tail: str | None = Field(default=None, max_length=MAX_TAIL_BYTES)
    archive: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="sha256 of the run directory's tar.gz, uploaded before this report",
    )
    started_at: datetime | None = Field(
        default=None,
        description="when the command started, by the agent's clock, for a run whose start "
        "travels with its report (a command that ended before its start was sent); the "
        "server keeps it between the claim and the report",
    )


class RunComplete(RunOutputs):
    """The command exited 0 (and any `results.json` parsed)."""

    token: str
    exit_code: Int = 0
    result: ResultDocument | None = None


class RunFail(RunOutputs):
    """The attempt failed; the record is retried while attempts remain."""

    token: str
    error: str = Field(min_length=1, max_length=MAX_ERROR_LENGTH)
    exit_code: Int | None = None


class RunRelease(Strict):
    """Give the record back without spending an attempt (agent shutdown, a runner that could
    not start the command)."""

    token: str
    reason: str = Field(default="released by agent", max_length=1024)


class RunOrphan(Strict):
    """The agent cannot run the record as specified (unknown runner, missing input, the run
    directory cannot be staged): the record is kept as `orphaned` with the reason, and no
    attempt is spent."""

    token: str
    reason: str = Field(min_length=1, max_length=MAX_ERROR_LENGTH)


class RunAck(Loose):
    """The answer to start/complete/fail/release: the run and its record as they now stand."""

    run_id: int
    run_state: RunState
    record_id: int
    record_state: RecordState
    attempts: int


ReportVerb = Literal["complete", "fail", "release", "orphan"]

#: What each verb may carry besides `run_id`, `token` and `verb`, and what it must.
_REPORT_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "complete": (
        frozenset({"exit_code", "result", "stdout_tail", "stderr_tail", "archive", "started_at"}),
        frozenset(),
    ),
    "fail": (
        frozenset({"error", "exit_code", "stdout_tail", "stderr_tail", "archive", "started_at"}),
        frozenset({"error"}),
    ),
    "release": (frozenset({"reason"}), frozenset()),
    "orphan": (frozenset({"reason"}), frozenset({"reason"})),
}
_REPORT_BODY = frozenset().union(*(allowed for allowed, _ in _REPORT_FIELDS.values()))


class RunReport(RunOutputs):
    """One final report on a run, for `POST /runs/reports`: its `verb` says which.

    - `complete`: the command exited 0 (`result` is its parsed `results.json`);
    - `fail`: the attempt failed (`error` says why); retried while attempts remain;
    - `release`: the agent gives the record back (`reason`); no attempt is spent;
    - `orphan`: the agent cannot run the record as specified (`reason`); it is kept as
      `orphaned` for a person, and no attempt is spent.

    Without a verb, a report with `error` is a failure and one without a completion (as
    before verbs existed). A field its verb does not take is refused (422).
    """

    run_id: Id
    token: str
    verb: ReportVerb | None = None
    exit_code: Int | None = None
    error: str | None = Field(default=None, min_length=1, max_length=MAX_ERROR_LENGTH)
    reason: str | None = Field(default=None, min_length=1, max_length=MAX_ERROR_LENGTH)
    result: ResultDocument | None = None

    @property
    def kind(self) -> str:
        """The verb, or the one a report without a verb stands for."""
        return self.verb or ("complete" if self.error is None else "fail")

    @model_validator(mode="after")
    def _fits_its_verb(self) -> RunReport:
        allowed, required = _REPORT_FIELDS[self.kind]
        extra = sorted(n for n in _REPORT_BODY - allowed if getattr(self, n) is not None)
        if extra:
            raise ValueError(f"{self.kind!r} reports do not take {', '.join(extra)}")
        missing = sorted(n for n in required if getattr(self, n) is None)
        if missing:
            raise ValueError(f"{self.kind!r} reports need {', '.join(missing)}")
        return self


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
