"""The verdict on a lease the moment it arrives: run it, give it back, or fail it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from farmhand import wire
from farmhand.runtime.resources.allocation import Allocator
from farmhand.runtime.resources.node import Need, NodeResources
from farmhand.runtime.resources.placement import Plan, plan
from farmhand.runtime.runners.definitions import load

Verdict = Callable[..., Plan]

DEFINITIONS = """
[runners.ghost]
kind = "container"
engine = "shifter"
executable = "/nonexistent/shifter"
image = "x"
"""


def lease(**run_args: Any) -> wire.Lease:
    return wire.Lease(
        run_id=1,
        token="t",
        expires_at=datetime.now(timezone.utc),
        record_id=1,
        campaign_id=1,
        key="k",
        command="true",
        attempt=1,
        run_args=run_args,
    )


@pytest.fixture
def verdict(tmp_path: Path) -> Verdict:
    """`verdict(**run_args)`: the plan for a lease with those run_args."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "site.toml").write_text(DEFINITIONS)
    runners = load([tmp_path / "d"], user_dir=tmp_path / "none")
    allocator = Allocator(NodeResources(cores=4, gpus=("0", "1"), memory_mb=1024), slots=4)
    return lambda **run_args: plan(lease(**run_args), runners, allocator)


def test_a_record_this_agent_can_run(verdict: Verdict) -> None:
    default = verdict()
    assert (default.refusal, default.error) == (None, None)
    assert default.runner is not None and default.runner.name == "subprocess"
    sized = verdict(runner="subprocess", cores=2, gpus=2, memory="1G")
    assert sized.need == Need(cores=2.0, gpus=2, memory_mb=1024)


@pytest.mark.parametrize(
    ("run_args", "refusal"),
    [
        ({"runner": "lammps"},
         "runner 'lammps' is not defined here (this agent offers 'subprocess')"),
        ({"runner": "ghost"},
         "runner 'ghost' is not offered here: /nonexistent/shifter not found on PATH"),
        ({"gpus": 3}, "needs 3 GPUs; this agent has 2"),
        ({"cores": 8}, "needs 8 cores; this agent has 4"),
        ({"memory": "2G"}, "needs 2048 MiB of memory; this agent has 1024 MiB"),
    ],
)  # fmt: skip
def test_leases_given_back(verdict: Verdict, run_args: dict, refusal: str) -> None:
    decided = verdict(**run_args)
    assert (decided.refusal, decided.error, decided.runner) == (refusal, None, None)


@pytest.mark.parametrize(
    ("run_args", "error"),
    [
        ({"runner": 3}, "run_args.runner must be a runner name, not 3"),
        ({"gpus": "two"}, "run_args.gpus must be a whole number of GPUs, not 'two'"),
    ],
)
def test_leases_that_fail(verdict: Verdict, run_args: dict, error: str) -> None:
    decided = verdict(**run_args)
    assert (decided.error, decided.refusal) == (error, None)
