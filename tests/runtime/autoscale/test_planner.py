"""The planner as a table of cases: backlog, live jobs and job shape in; jobs to submit
(sized), pending jobs to cancel and unfit records out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from farmhand.runtime.autoscale.planner import Job, Need, Shape, Size, plan

NODE = Shape(time_limit=3600, cores=2, gpus=0, memory_mb=4000)
GPU_NODE = Shape(time_limit=3600, cores=32, gpus=4, memory_mb=256_000)
FIXED = Shape(time_limit=3600, cores=8, gpus=0, fixed=frozenset({"cores"}))


@dataclass
class Case:
    needs: list[Need]
    jobs: list[Job] = field(default_factory=list)
    shape: Shape = NODE
    max_jobs: int = 4
    max_pending: int = 2
    submit: list[Size] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    unfit: list[str] = field(default_factory=list)  # a word of each reason
    idle: bool = False


CASES = {
    "nothing waits, nothing runs: idle": Case([], idle=True),
    "nothing waits: pending jobs are cancelled, running ones left to end": Case(
        [], [Job("1", "pending"), Job("2", "running")], cancel=["1"], idle=True
    ),
    "one small record: a one-core job": Case([Need(1)], submit=[Size(1, 0, None, 1, 1)]),
    "many records: whole nodes, up to max-pending": Case(
        [Need(200)], submit=[Size(2, 0, None, 1, 200)] * 2
    ),
    "never past max-jobs": Case(
        [Need(200)], [Job("1", "running", 2), Job("2", "running", 2)], max_jobs=2
    ),
    "pending counts against max-pending": Case(
        [Need(200)], [Job("1", "pending", 2), Job("2", "pending", 2)], max_jobs=4
    ),
    "running capacity covers the backlog: nothing submitted": Case(
        [Need(3)], [Job("1", "running", 2), Job("2", "running", 2)]
    ),
    "capacity short by one job": Case(
        [Need(5)], [Job("1", "running", 2), Job("2", "running", 2)], submit=[Size(1, 0, None, 1, 5)]
    ),
    "GPU records get a job with GPUs": Case(
        [Need(2, gpus=2, cores=4)], shape=GPU_NODE, submit=[Size(8, 4, None, 1, 2)]
    ),
    "a record needing more GPUs than a node has is reported, not submitted for": Case(
        [Need(3, gpus=4)], unfit=["GPUs"], idle=True
    ),
    "the unfit are reported while the rest get jobs": Case(
        [Need(1, walltime=7200), Need(1, cores=64), Need(1, memory_mb=8000), Need(1)],
        submit=[Size(1, 0, None, 1, 1)],
        unfit=["walltime", "cores", "memory"],
    ),
    "a walltime the agent's margin leaves no room for is unfit": Case(
        [Need(1, walltime=3550)], unfit=["walltime"], idle=True
    ),
    "memory asked for is requested": Case(
        [Need(2, memory_mb=1000)], submit=[Size(2, 0, 1000, 1, 2)]
    ),
    "options fix the job's cores": Case([Need(1)], shape=FIXED, submit=[Size(8, 0, None, 1, 1)]),
    "runners the agents do not offer are unfit": Case(
        [Need(2, runner="lammps")],
        shape=Shape(time_limit=3600, runners=frozenset({"subprocess"})),
        unfit=["runner"],
        idle=True,
    ),
    "unknown node: sized to the records": Case(
        [Need(3, cores=4)],
        shape=Shape(time_limit=600),
        max_pending=1,
        submit=[Size(12, 0, None, 1, 3)],
    ),
    "several nodes per job": Case(
        [Need(8)],
        shape=Shape(time_limit=600, cores=2, nodes=2),
        submit=[Size(2, 0, None, 2, 8)] * 2,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    got = plan(
        case.needs, case.jobs, case.shape, max_jobs=case.max_jobs, max_pending=case.max_pending
    )
    assert got.submit == case.submit
    assert got.cancel == case.cancel
    assert len(got.unfit) == len(case.unfit)
    for word, unfit in zip(case.unfit, got.unfit, strict=True):
        assert word in unfit.reason, unfit.reason
    assert got.idle == case.idle
    assert ("idle" in got.message) == case.idle, got.message


def test_messages_say_why_nothing_is_submitted() -> None:
    full = plan([Need(50)], [Job("1", "running", 2)], NODE, max_jobs=1, max_pending=1)
    assert full.message == "50 ready record(s); 0 job(s) pending, 1 running (at --max-jobs 1)"
    gpus = plan([Need(3, gpus=4)], [], NODE, max_jobs=1, max_pending=1)
    assert gpus.unfit[0].reason == "4 GPUs; a node has 0" and gpus.unfit[0].count == 3
