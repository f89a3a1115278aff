"""The batch system an autoscaler talks to: submit, query, cancel (and, where it can say,
what one node holds). `slurm.py` and `pbs.py` implement it with the systems' commands;
tests put fake commands on PATH."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

#: Submission errors that mean "you have as many jobs as you may": the autoscaler lowers its
#: own --max-jobs to what it has and waits, instead of retrying into the same wall.
LIMIT_ERRORS = re.compile(
    r"QOSMaxSubmitJob|AssocMaxSubmitJob|QOSMaxJobsPer|AssocMaxJobs|MaxSubmitJobs|"
    r"MaxJobsPerUser|job submit limit|submit(ted)? jobs? limit|"
    r"would exceed .*limit|Maximum number of jobs|too many jobs",
    re.IGNORECASE,
)
#: How long a scheduler command may take before the cycle gives up on it.
COMMAND_TIMEOUT = 60.0


class SchedulerError(Exception):
    """A scheduler command failed; the message says which and why. `limit`: the batch
    system refused more jobs (`LIMIT_ERRORS`)."""

    def __init__(self, message: str, *, limit: bool = False):
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class JobRequest:
    """One job to submit: name, per-node amounts, walltime, and the agents' options."""

    name: str
    nodes: int
    cores: int
    gpus: int
    memory_mb: int | None
    time_limit: float
    agent_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeConfig:
    """What one node of a partition holds (None: unknown) and the partition's time limit."""

    cores: float | None = None
    gpus: int | None = None
    memory_mb: int | None = None
    time_limit: float | None = None


class Scheduler(Protocol):
    """What the loop needs of a batch system."""

    name: str

    def submit(self, request: JobRequest) -> str:
        """Submit; the job id. SchedulerError (with `limit` when over a limit) on failure."""
        ...

    def query(self, job_ids: Sequence[str], *, job_name: str) -> dict[str, str]:
        """`pending` or `running` for each live job among `job_ids` and the jobs named
        `job_name`; a job not in the answer has ended. SchedulerError when it cannot say."""
        ...

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel the jobs (gone ones are no error)."""
        ...

    def node_config(self) -> NodeConfig | None:
        """What a node of the target partition holds, if the system can say."""
        ...


def run(command: Sequence[str], *, env: Mapping[str, str] | None = None) -> str:
    """Run a scheduler command; its stdout, or SchedulerError with its stderr."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SchedulerError(f"{command[0]}: {exc}") from exc
    if done.returncode != 0:
        error = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise SchedulerError(
            f"{command[0]} failed: {error}", limit=bool(LIMIT_ERRORS.search(error))
        )
    return done.stdout


def clock(seconds: float) -> str:
    """`D-HH:MM:SS` (Slurm) for a number of seconds, rounded up to a whole minute."""
    minutes = max(1, int(-(-seconds // 60)))
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text
