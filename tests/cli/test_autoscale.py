"""`farmhand ls allocations` and the batch-jobs line of `farmhand status`, and the
autoscale command's own checks (its script, `--` handing arguments on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.cli import autoscale
from farmhand.cli.main import main
from tests.cli.test_main import farmhand
from tests.conftest import LiveServer


def test_ls_allocations_and_status_show_the_jobs(live_server: LiveServer) -> None:
    client = live_server.client()
    campaign = client.create_campaign("scaled")
    client.submit(campaign.id, [wire.RecordSpec(key=f"r{i}", command="true") for i in range(40)])
    env = live_server.client_env()
    assert "batch jobs" not in farmhand("status", env=env).stdout  # no allocations yet
    lease = client.acquire_autoscaler("slurm:campaign=1", holder="login1:7", ttl=60)
    assert lease.token is not None
    for job in ("11", "12"):
        body = wire.AllocationCreate(
            autoscaler="slurm:campaign=1",
            token=lease.token,
            scheduler="slurm",
            job_id=job,
            submitted_for={"records": 40, "cores": 2},
        )
        client.create_allocation(body)
    status = {
        "message": "40 ready record(s); 2 job(s) pending, 0 running",
        "ready": 40,
        "unfit": [{"count": 3, "reason": "4 GPUs; a node has 0", "runner": "subprocess"}],
    }
    client.renew_autoscaler("slurm:campaign=1", token=lease.token, ttl=60, status=status)

    listed = farmhand("ls", "allocations", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "AUTOSCALER", "JOB", "STATE"]
    assert "slurm 12" in lines[1] and "pending" in lines[1] and "records=40, cores=2" in lines[1]
    assert "autoscaler slurm:campaign=1 (login1:7): 40 ready record(s)" in listed.stdout
    assert "not submitted for 3 ready record(s): 4 GPUs; a node has 0" in listed.stdout
    as_json = json.loads(farmhand("ls", "allocations", "--json", env=env).stdout)
    assert [a["job_id"] for a in as_json["allocations"]] == ["12", "11"]
    said = farmhand("status", env=env).stdout
    assert "batch jobs: 2 pending, 0 running for 40 ready records (3 more fit no job)" in said
    as_json = json.loads(farmhand("status", "--json", env=env).stdout)
    assert as_json["batch_jobs"].startswith("batch jobs: 2 pending")


def test_arguments_after_a_double_dash_go_to_the_scheduler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = {}

    def capture(args: object) -> int:
        seen["args"] = args
        return 0

    monkeypatch.setattr(autoscale, "cmd_autoscale", capture)
    argv = ["autoscale", "slurm", "--max-jobs", "3", "--", "--qos=debug", "--exclusive"]
    assert main(argv) == 0
    args = seen["args"]
    assert args.max_jobs == 3 and args.scheduler_args == ["--qos=debug", "--exclusive"]


def test_the_agent_script_is_found_in_a_checkout_or_named(tmp_path: Path) -> None:
    found = autoscale.default_script("slurm", cwd=tmp_path)
    assert found.name == "farmhand-agent.sbatch" and found.is_file()
    assert autoscale.default_script("pbs", cwd=tmp_path).name == "farmhand-agent.pbs"
    mine = tmp_path / "deploy" / "slurm" / "farmhand-agent.sbatch"
    mine.parent.mkdir(parents=True)
    mine.write_text("#!/bin/bash\n")
    assert autoscale.default_script("slurm", cwd=tmp_path) == mine


def test_a_missing_script_is_a_one_line_error(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.client_env()
    done = farmhand("autoscale", "slurm", "--once", "--script", str(tmp_path / "nope"), env=env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "no such file" in done.stderr
