"""Elastic allocation: the backlog an autoscaler sizes batch jobs for, the jobs it submitted
(allocations), and the lease that lets one autoscaler act for a set of filters."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import Field

from farmhand.wire.base import Document, Id, Loose, Strict, Text

#: The longest an autoscaler lease may last without a renewal.
MAX_AUTOSCALER_TTL = 3600.0
#: Backlog groups the server reads at most; the rest is counted in `Backlog.other`.
MAX_BACKLOG_GROUPS = 500
NAME = r"^[A-Za-z0-9][A-Za-z0-9._:=,@+-]*$"


class AllocationState(str, Enum):
    """Where a batch job the autoscaler submitted stands."""

    pending = "pending"
    running = "running"
    ended = "ended"
    cancelled = "cancelled"
    failed = "failed"

    def __str__(self) -> str:
        return self.value


#: States of a job still in the batch system's queue.
LIVE_ALLOCATION_STATES = (AllocationState.pending, AllocationState.running)


class BacklogGroup(Loose):
    """Ready records that ask for the same runner and amounts, and how many there are."""

    runner: str
    cores: float | None = None
    gpus: int | None = None
    memory_mb: int | None = None
    walltime: float | None = Field(default=None, description="seconds")
    count: int


class Backlog(Loose):
    """Ready records an autoscaler's agents could take, grouped by what they need."""

    ready: int = Field(description="ready records matching the filters")
    groups: list[BacklogGroup] = Field(default_factory=list, description="largest first")
    other: int = Field(default=0, description="ready records past the groups read")


class AutoscalerAcquire(Strict):
    """An autoscaler asking to act for `name` (its filters) for `ttl` seconds."""

    holder: Text = Field(min_length=1, max_length=200, description="host:pid, for people")
    ttl: float = Field(gt=0, le=MAX_AUTOSCALER_TTL)


class AutoscalerRenew(Strict):
    """The holder keeps its lease, and says how it is doing."""

    token: Text = Field(min_length=1, max_length=100)
    ttl: float = Field(gt=0, le=MAX_AUTOSCALER_TTL)
    status: Document = Field(
        default_factory=dict,
        description="what the autoscaler last decided: message, idle, unfit records, limits",
    )


class AutoscalerRelease(Strict):
    """The holder gives its lease up (it stops)."""

    token: Text = Field(min_length=1, max_length=100)


class Autoscaler(Loose):
    """An autoscaler's lease and its last status; `token` only in the answer to its holder."""

    name: str
    holder: str
    token: str | None = None
    expires_at: datetime
    updated_at: datetime
    status: dict[str, Any] = Field(default_factory=dict)


class AllocationCreate(Strict):
    """A batch job an autoscaler submitted, fenced by its lease token."""

    autoscaler: str = Field(min_length=1, max_length=200, pattern=NAME)
    token: Text = Field(min_length=1, max_length=100)
    scheduler: str = Field(pattern=r"^(slurm|pbs)$")
    job_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._\[\]-]+$")
    state: AllocationState = AllocationState.pending
    submitted_for: Document = Field(
        default_factory=dict, description="the records and resources it was sized for"
    )


class AllocationUpdate(Strict):
    """A job's new state, as the batch system reports it; fenced by the lease token."""

    token: Text = Field(min_length=1, max_length=100)
    state: AllocationState
    note: Text | None = Field(default=None, max_length=1000)


class Allocation(Loose):
    """A batch job an autoscaler submitted, and the agents that registered from it."""

    id: Id
    autoscaler: str
    scheduler: str
    job_id: str
    state: AllocationState
    submitted_at: datetime
    updated_at: datetime
    submitted_for: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None
    agents: list[str] = Field(
        default_factory=list, description="agents registered from the job: 'name (state)'"
    )


class Allocations(Loose):
    """The allocations asked for, newest first, and every autoscaler's lease and status."""

    allocations: list[Allocation] = Field(default_factory=list)
    autoscalers: list[Autoscaler] = Field(default_factory=list)
