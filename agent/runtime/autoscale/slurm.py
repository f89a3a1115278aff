"""Slurm: `sbatch` submits the agent script (deploy/slurm/farmhand-agent.sbatch), `squeue`
says which jobs live, `scancel` cancels, `sinfo` says what a node of the partition holds."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from farmhand.runtime.autoscale.schedulers import (
    JobRequest,
    NodeConfig,
    SchedulerError,
    clock,
    run,
)
from farmhand.wire import clock_seconds

#: squeue's states, as the loop sees them; the rest (COMPLETED, FAILED, …) have ended.
STATES = {
    "PENDING": "pending",
    "REQUEUED": "pending",
    "REQUEUE_HOLD": "pending",
    "RESV_DEL_HOLD": "pending",
    "CONFIGURING": "running",
    "RUNNING": "running",
    "COMPLETING": "running",
    "SUSPENDED": "running",
    "STOPPED": "running",
    "SIGNALING": "running",
    "STAGE_OUT": "running",
    "RESIZING": "running",
}


class Slurm:
    """The Slurm commands, for one partition and account."""

    name = "slurm"

    def __init__(
        self,
        script: Path,
        *,
        partition: str | None = None,
        account: str | None = None,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.script, self.partition, self.account = script, partition, account
        self.extra, self.env = list(extra), env

    def submit(self, request: JobRequest) -> str:
        """`sbatch --parsable …`; the job id."""
        command = [
            "sbatch",
            "--parsable",
            f"--job-name={request.name}",
            "--comment=farmhand autoscale",
            f"--nodes={request.nodes}",
            f"--cpus-per-task={request.cores}",
            f"--time={clock(request.time_limit)}",
        ]
        if request.gpus:
            command.append(f"--gres=gpu:{request.gpus}")
        if request.memory_mb:
            command.append(f"--mem={request.memory_mb}M")
        if self.partition:
            command.append(f"--partition={self.partition}")
        if self.account:
            command.append(f"--account={self.account}")
        command += [*self.extra, str(self.script), *request.agent_args]
        env = {**(self.env if self.env is not None else os.environ), **request.env}
        out = run(command, env=env).strip()
        job = out.splitlines()[-1].split(";")[0].strip() if out else ""
        if not job.isdigit() and not re.fullmatch(r"\d+_\d+", job):
            raise SchedulerError(f"sbatch said no job id: {out!r}")
        return job

    def query(self, job_ids: Sequence[str], *, job_name: str) -> dict[str, str]:
        """Your live jobs among `job_ids` or named `job_name` (one `squeue`)."""
        out = run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T|%j"], env=self.env)
        wanted, found = set(job_ids), {}
        for line in out.splitlines():
            job, _, rest = line.strip().partition("|")
            state, _, name = rest.partition("|")
            if job in wanted or name == job_name:
                found[job] = STATES.get(state, "ended")
        return {job: state for job, state in found.items() if state != "ended"}

    def cancel(self, job_ids: Sequence[str]) -> None:
        """`scancel` the jobs."""
        if job_ids:
            run(["scancel", *job_ids], env=self.env)

    def node_config(self) -> NodeConfig | None:
        """The largest node of the partition (the default one unless --partition), from
        `sinfo`: CPUs, memory, GPUs (gres `gpu[:type]:N`) and the time limit."""
        try:
            out = run(["sinfo", "-h", "-o", "%P|%c|%m|%G|%l"], env=self.env)
        except SchedulerError:
            return None
        rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4]
        wanted = self.partition or next((r[0][:-1] for r in rows if r[0].endswith("*")), None)
        rows = [r for r in rows if r[0].rstrip("*") == wanted]
        if not rows:
            return None
        cores = max(_number(r[1]) or 0 for r in rows)
        memory = max(_number(r[2]) or 0 for r in rows)
        gpus = max(_gpus(r[3]) for r in rows)
        limits = [_limit(r[4]) for r in rows]
        time_limit = None if any(t is None for t in limits) else max(t or 0 for t in limits)
        return NodeConfig(
            cores=cores or None,
            gpus=gpus,
            memory_mb=int(memory) if memory > 1 else None,  # 1: not configured
            time_limit=time_limit,
        )


def _number(text: str) -> float | None:
    match = re.match(r"\d+", text.strip())
    return float(match.group()) if match else None


def _gpus(gres: str) -> int:
    """The GPUs in a gres list (`gpu:4`, `gpu:a100:4(S:0-1)`, `(null)`)."""
    total = 0
    for item in re.split(r",(?![^()]*\))", gres):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] == "gpu" and len(parts) > 1 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def _limit(text: str) -> float | None:
    text = text.strip()
    if text in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    try:
        return clock_seconds(text) if ":" in text or "-" in text else float(text) * 60
    except ValueError:
        return None
