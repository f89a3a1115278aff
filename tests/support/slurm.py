"""The machine's Slurm, for the tests that submit the sbatch script (`deploy/slurm/`).

`deploy/slurm/single-node.sh` sets up a single-node Slurm (CI runs it from `.ci/run`). When
no Slurm answers, the tests that need it are skipped with the reason — except under CI=true,
where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SBATCH_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "farmhand-agent.sbatch"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


@cache
def slurm_problem() -> str | None:
    """Why Slurm cannot run jobs here (None when it can)."""
    missing = [c for c in ("sbatch", "sinfo", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        return f"{', '.join(missing)} not installed (run deploy/slurm/single-node.sh as root)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo does not answer: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states):
        reason = out.stderr.strip() or f"node states {states}"
        return f"no Slurm node takes jobs ({reason}); run deploy/slurm/single-node.sh"
    return None


class Slurm:
    """Submit jobs, watch them, cancel what a test leaves behind."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def sbatch(self, *args: str, env: dict[str, str], cwd: Path) -> str:
        """Submit; the job id."""
        done = subprocess.run(
            ["sbatch", "--parsable", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"sbatch failed: {done.stderr}"
        job = done.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    @staticmethod
    def state(job: str) -> str:
        """The job's state (PENDING, RUNNING, COMPLETED, ...)."""
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30
        )
        match = re.search(r"\bJobState=(\S+)", out.stdout)
        return match.group(1) if match else f"unknown ({out.stderr.strip()})"

    def wait(self, job: str, timeout: float, states: set[str] = FINAL_STATES) -> str:
        """Wait until the job reaches one of `states`; fail the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(job)
            if state in states:
                return state
            if time.monotonic() > deadline:
                pytest.fail(f"Slurm job {job} is still {state} after {timeout}s")
            time.sleep(0.5)

    @staticmethod
    def signal_batch(job: str, name: str) -> None:
        """Send signal `name` to the job's batch script only (like --signal=B:...)."""
        subprocess.run(["scancel", "--batch", f"--signal={name}", job], check=True, timeout=30)

    def cancel_all(self) -> None:
        """Cancel every job this test submitted that is still around."""
        for job in self.jobs:
            if self.state(job) not in FINAL_STATES:
                subprocess.run(["scancel", job], check=False, timeout=30)
        for job in self.jobs:
            deadline = time.monotonic() + 60
            while self.state(job) not in FINAL_STATES and time.monotonic() < deadline:
                time.sleep(0.5)


@pytest.fixture
def slurm() -> Iterator[Slurm]:
    """The machine's Slurm; jobs left running by the test are cancelled afterwards."""
    problem = slurm_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs Slurm: {problem}", pytrace=False)
        pytest.skip(f"Slurm tests skipped: {problem}")
    cluster = Slurm()
    yield cluster
    cluster.cancel_all()
