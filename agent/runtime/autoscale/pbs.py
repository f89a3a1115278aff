"""PBS Pro / Torque: `qsub` submits the agent script (deploy/pbs/farmhand-agent.pbs),
`qstat` says which jobs live, `qdel` cancels. PBS says nothing here about its nodes: the
job's amounts come from the options (--cpus-per-task, --gpus-per-node, --mem)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from farmhand.runtime.autoscale.schedulers import (
    JobRequest,
    NodeConfig,
    SchedulerError,
    clock,
    run,
)

#: qstat's state letters, as the loop sees them; F, X (finished) and the rest have ended.
STATES = {"Q": "pending", "H": "pending", "W": "pending", "T": "pending", "S": "running"}
STATES.update(R="running", E="running", B="running", U="running")


class Pbs:
    """The PBS commands, for one queue and account."""

    name = "pbs"

    def __init__(
        self,
        script: Path,
        *,
        queue: str | None = None,
        account: str | None = None,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.script, self.queue, self.account = script, queue, account
        self.extra, self.env = list(extra), env

    def submit(self, request: JobRequest) -> str:
        """`qsub -V …`; the job id. The agents' options travel in FARMHAND_AGENT_ARGS."""
        select = f"select={request.nodes}:ncpus={request.cores}"
        if request.gpus:
            select += f":ngpus={request.gpus}"
        if request.memory_mb:
            select += f":mem={request.memory_mb}mb"
        walltime = clock(request.time_limit).replace("-", ":")
        if walltime.count(":") == 3:  # D:HH:MM:SS → HHH:MM:SS
            days, hours, rest = walltime.split(":", 2)
            walltime = f"{int(days) * 24 + int(hours)}:{rest}"
        command = ["qsub", "-V", "-N", request.name, "-l", select, "-l", f"walltime={walltime}"]
        if self.queue:
            command += ["-q", self.queue]
        if self.account:
            command += ["-A", self.account]
        command += [*self.extra, str(self.script)]
        env = {**(self.env if self.env is not None else os.environ), **request.env}
        env["FARMHAND_AGENT_ARGS"] = shlex.join(request.agent_args)
        job = run(command, env=env).strip()
        if not job or len(job.split()) != 1:
            raise SchedulerError(f"qsub said no job id: {job!r}")
        return job

    def query(self, job_ids: Sequence[str], *, job_name: str) -> dict[str, str]:
        """The live jobs among `job_ids` (one `qstat`); finished ones are not listed, or
        listed as F. PBS's qstat truncates names, so `job_name` finds nothing here."""
        if not job_ids:
            return {}
        try:
            out = run(["qstat", *job_ids], env=self.env)
        except SchedulerError as exc:
            # qstat fails when a job it is asked about is gone; ask one by one then.
            if "Unknown Job" not in str(exc) and "has finished" not in str(exc):
                raise
            out = "\n".join(_one(job, self.env) for job in job_ids)
        found = {}
        short = {job.split(".")[0]: job for job in job_ids}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 5 or fields[0].split(".")[0] not in short:
                continue
            state = STATES.get(fields[4], "ended")
            if state != "ended":
                found[short[fields[0].split(".")[0]]] = state
        return found

    def cancel(self, job_ids: Sequence[str]) -> None:
        """`qdel` the jobs."""
        if job_ids:
            run(["qdel", *job_ids], env=self.env)

    def node_config(self) -> NodeConfig | None:
        """Unknown: PBS's node descriptions differ by site; the options say."""
        return None


def _one(job: str, env: Mapping[str, str] | None) -> str:
    try:
        return run(["qstat", job], env=env)
    except SchedulerError as exc:
        if "Unknown Job" in str(exc) or "has finished" in str(exc):
            return ""
        raise
