"""Small pieces of the scheduler side: what `sinfo` says of a node, walltimes in Slurm's
form, limit errors recognised, and the job label an agent registers with."""

from __future__ import annotations

import pytest

from farmhand.runtime.agent import batch_job_labels
from farmhand.runtime.autoscale.schedulers import LIMIT_ERRORS, clock
from farmhand.runtime.autoscale.slurm import _gpus, _limit


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("(null)", 0), ("gpu:4", 4), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2,gpu:v100:2", 4)],
)
def test_gpus_of_a_gres_list(gres: str, gpus: int) -> None:
    assert _gpus(gres) == gpus


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("infinite", None), ("30", 1800.0), ("1:00:00", 3600.0), ("1-00:00:00", 86400.0)],
)
def test_partition_time_limits(text: str, seconds: float | None) -> None:
    assert _limit(text) == seconds


def test_walltimes_in_slurm_form() -> None:
    assert [clock(s) for s in (30, 600, 3600, 90000)] == [
        "00:01:00",
        "00:10:00",
        "01:00:00",
        "1-01:00:00",
    ]


@pytest.mark.parametrize(
    "error",
    [
        "sbatch: error: QOSMaxSubmitJobPerUserLimit",
        "sbatch: error: AssocMaxSubmitJobLimit",
        "Batch job submission failed: Job violates accounting/QOS policy (job submit limit, "
        "user's size and/or time limits)",
        "qsub: would exceed queue generic's per-user limit",
        "qsub: Maximum number of jobs already in queue for user",
    ],
)
def test_limit_errors_are_recognised(error: str) -> None:
    assert LIMIT_ERRORS.search(error)


def test_other_errors_are_not_limits() -> None:
    assert not LIMIT_ERRORS.search("sbatch: error: invalid partition specified: nope")


def test_agents_name_their_batch_job_in_their_labels() -> None:
    assert batch_job_labels({"SLURM_JOB_ID": "42", "HOME": "/h"}) == {"slurm_job": "42"}
    assert batch_job_labels({"PBS_JOBID": "7.server"}) == {"pbs_job": "7.server"}
    assert batch_job_labels({}) == {}
