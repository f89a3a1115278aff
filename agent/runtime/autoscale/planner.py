"""What an autoscaler does in one cycle, decided from plain values: no I/O here.

Given the backlog (ready records grouped by need), the jobs it has in the batch system and
what one job may hold, `plan` says which jobs to submit (each sized for the records still
waiting), which pending jobs to cancel, and which records no job could ever run (reported,
never submitted for).

Demand and capacity are counted in cores and GPUs: a ready record asks for its cores (1 when
it names none) and its GPUs; a live job (pending or running) holds its cores and GPUs per
node times its nodes. Jobs are submitted while demand exceeds capacity, up to `max_jobs`
pending plus running and `max_pending` pending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: An agent drains this long before its job ends (its --walltime-margin, 120 s, and a start):
#: a record asking for more than the job's time limit less this could never be claimed.
WALLTIME_MARGIN = 180.0


@dataclass(frozen=True)
class Need:
    """`count` ready records asking for the same runner and amounts (None: not said)."""

    count: int
    runner: str = "subprocess"
    cores: float | None = None
    gpus: int | None = None
    memory_mb: int | None = None
    walltime: float | None = None


@dataclass(frozen=True)
class Shape:
    """What one job may hold per node: the options, else the partition's nodes (None:
    unknown, so not a limit). `fixed` names the amounts an option set, which every job
    asks for as they are; the others are sized to the records."""

    time_limit: float
    cores: float | None = None
    gpus: int | None = None
    memory_mb: int | None = None
    nodes: int = 1
    runners: frozenset[str] | None = None
    fixed: frozenset[str] = frozenset()
    margin: float = WALLTIME_MARGIN


@dataclass(frozen=True)
class Job:
    """A live job of this autoscaler: its id, state and what it holds per node."""

    job_id: str
    state: str  # pending or running
    cores: float = 1
    gpus: int = 0
    nodes: int = 1


@dataclass(frozen=True)
class Size:
    """A job to submit: per node amounts, and the ready records it was sized for."""

    cores: int
    gpus: int
    memory_mb: int | None
    nodes: int
    records: int


@dataclass(frozen=True)
class Unfit:
    """Ready records no job of this shape could run, and why."""

    count: int
    reason: str
    need: Need


@dataclass
class Plan:
    """One cycle's decisions and the line that says them."""

    submit: list[Size] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    unfit: list[Unfit] = field(default_factory=list)
    ready: int = 0
    idle: bool = False
    message: str = ""


def plan(
    needs: list[Need], jobs: list[Job], shape: Shape, *, max_jobs: int, max_pending: int
) -> Plan:
    """The cycle's plan (see the module docstring)."""
    fit = [n for n in needs if n.count > 0]
    out = Plan()
    for need in list(fit):
        reason = unfit_reason(need, shape)
        if reason is not None:
            out.unfit.append(Unfit(need.count, reason, need))
            fit.remove(need)
    out.ready = sum(n.count for n in fit)
    pending = [j for j in jobs if j.state == "pending"]
    if not fit:
        out.cancel = [j.job_id for j in pending]
        out.idle = True
        out.message = "idle: no ready records a job could run" + _jobs_note(jobs, out.cancel)
        return out
    want_cores = sum(n.count * _cores(n) for n in fit)
    want_gpus = sum(n.count * (n.gpus or 0) for n in fit)
    have_cores = sum(j.cores * j.nodes for j in jobs)
    have_gpus = sum(j.gpus * j.nodes for j in jobs)
    total, waiting = len(jobs), len(pending)
    while want_cores > have_cores or want_gpus > have_gpus:
        if total >= max_jobs or waiting >= max_pending:
            break
        size = size_job(fit, shape, want_cores - have_cores, want_gpus - have_gpus)
        out.submit.append(size)
        have_cores += size.cores * size.nodes
        have_gpus += size.gpus * size.nodes
        total, waiting = total + 1, waiting + 1
    out.message = _busy_message(out, jobs, total, waiting, max_jobs, max_pending)
    return out


def unfit_reason(need: Need, shape: Shape) -> str | None:
    """Why no job of `shape` could run a record of `need` (None: one could)."""
    if shape.runners is not None and need.runner not in shape.runners:
        return f"runner '{need.runner}' is not among --runner {','.join(sorted(shape.runners))}"
    usable = shape.time_limit - min(shape.margin, shape.time_limit / 2)
    if need.walltime is not None and need.walltime > usable:
        return (
            f"walltime {_clock(need.walltime)} is more than a job's --time-limit "
            f"{_clock(shape.time_limit)} leaves ({_clock(usable)} after the agent's margin)"
        )
    if shape.cores is not None and _cores(need) > shape.cores:
        return f"{need.cores:g} cores; a node has {shape.cores:g}"
    if need.gpus and need.gpus > (shape.gpus or 0):
        return f"{need.gpus} GPUs; a node has {shape.gpus or 0}"
    if need.memory_mb and shape.memory_mb is not None and need.memory_mb > shape.memory_mb:
        return f"{need.memory_mb} MiB memory; a node has {shape.memory_mb}"
    return None


def size_job(fit: list[Need], shape: Shape, cores: float, gpus: float) -> Size:
    """A job for `cores` and `gpus` more of demand: what the options fix, else as much as
    the waiting records use (at least the largest one record, at most a node)."""
    nodes = shape.nodes
    per_node = math.ceil(max(cores, 0) / nodes)
    biggest = max(_cores(n) for n in fit)
    if "cores" in shape.fixed:
        job_cores = int(shape.cores or 1)
    else:
        job_cores = math.ceil(max(biggest, per_node))
        if shape.cores is not None:
            job_cores = min(job_cores, int(shape.cores))
    most_gpus = max((n.gpus or 0) for n in fit)
    if "gpus" in shape.fixed:
        job_gpus = int(shape.gpus or 0)
    else:
        job_gpus = max(most_gpus, math.ceil(max(gpus, 0) / nodes)) if most_gpus else 0
        job_gpus = min(job_gpus, shape.gpus or 0)
    memory = max((n.memory_mb or 0 for n in fit), default=0) or None
    job_memory = shape.memory_mb if "memory_mb" in shape.fixed else memory
    records = sum(n.count for n in fit)
    return Size(job_cores, job_gpus, job_memory, nodes, records)


def _cores(need: Need) -> float:
    return need.cores if need.cores else 1.0


def _jobs_note(jobs: list[Job], cancel: list[str]) -> str:
    running = sum(j.state == "running" for j in jobs)
    parts = [f"cancelling {len(cancel)} pending job(s)"] if cancel else []
    if running:
        parts.append(f"{running} running job(s) end when their agents are idle")
    return f"; {'; '.join(parts)}" if parts else ""


def _busy_message(
    out: Plan, jobs: list[Job], total: int, waiting: int, max_jobs: int, max_pending: int
) -> str:
    pending = sum(j.state == "pending" for j in jobs) + len(out.submit)
    running = sum(j.state == "running" for j in jobs)
    text = f"{out.ready} ready record(s); {pending} job(s) pending, {running} running"
    if out.submit:
        text += f" (submitting {len(out.submit)})"
    elif total >= max_jobs:
        text += f" (at --max-jobs {max_jobs})"
    elif waiting >= max_pending:
        text += f" (at --max-pending {max_pending})"
    return text


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
