"""`farmhand autoscale slurm` under the real single-node Slurm: a campaign with no agent
drains through the jobs it submits (never more than --max-jobs in squeue), a kill -9 and a
restart adopt the jobs instead of submitting more, nothing of it is left in squeue at the
end and it says it is idle; a record needing more GPUs than the partition's nodes have is
reported, not submitted for.

Every job carries the test's own name (`--name`, so its job name `fh-<name>`): the tests look
at and cancel only their own jobs, whatever else runs on the machine's Slurm."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import wait_for
from tests.e2e.integrations.test_slurm import job_env
from tests.support.slurm import SBATCH_SCRIPT, Slurm

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["sqlite"])]


def our_jobs(job_name: str) -> list[str]:
    """Our jobs still in squeue (pending, running, completing)."""
    out = subprocess.run(
        ["squeue", "-h", "-n", job_name, "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.split()


def autoscaler(
    server: LiveServer, tmp_path: Path, name: str, *args: str, log: Path
) -> subprocess.Popen:
    """`farmhand autoscale slurm` with an admin token, agents get the token file."""
    env = job_env(server, tmp_path)
    env["FARMHAND_TOKEN"] = server.admin_token  # the autoscaler's own (submitter or admin)
    command = [
        *(sys.executable, "-m", "farmhand", "autoscale", "slurm", "--name", name),
        *("--script", str(SBATCH_SCRIPT), "--agent-token-file", env["FARMHAND_TOKEN_FILE"]),
        *args,
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=out)


def test_a_campaign_drains_through_autoscaled_jobs_and_survives_a_kill(
    live_server: LiveServer, slurm: Slurm, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("autoscaled")
    specs = [wire.RecordSpec(key=f"r{i}", command="sleep 0.1") for i in range(200)]
    client.submit(campaign.id, specs)
    name = f"t{uuid.uuid4().hex[:10]}"
    job_name, log = f"fh-{name}", tmp_path / "autoscale.log"
    args = [
        *("--campaign", str(campaign.id), "--max-jobs", "2", "--max-pending", "2"),
        *("--cpus-per-task", "1", "--time-limit", "10m", "--idle-timeout", "3"),
        *("--interval", "1", "--lease-ttl", "4", "--agent-option=--poll=1"),
        *("--", f"--output={tmp_path}/job-%j.out"),
    ]
    seen_at_once = 0

    def progress() -> int:
        nonlocal seen_at_once
        jobs = our_jobs(job_name)
        slurm.jobs.extend(j for j in jobs if j not in slurm.jobs)  # cancelled at teardown
        seen_at_once = max(seen_at_once, len(jobs))
        return client.campaign(campaign.id).counts.get(wire.RecordState.done, 0)

    first = autoscaler(live_server, tmp_path, name, *args, log=log)
    try:
        wait_for(lambda: progress() >= 20, timeout=90, what="20 records done")
        wait_for(lambda: len(client.allocations().allocations) == 2, timeout=30, what="2 jobs")
        first.send_signal(signal.SIGKILL)  # mid-campaign, its lease still held
        first.wait(timeout=10)
        assert progress() < 200
        second = autoscaler(live_server, tmp_path, name, *args, log=log)
        try:
            wait_for(lambda: progress() == 200, timeout=120, what="every record done")
            # The pending jobs are cancelled, the running ones' agents exit when idle.
            wait_for(lambda: not our_jobs(job_name), timeout=60, what="our jobs to leave squeue")
            wait_for(lambda: "idle" in log.read_text(), timeout=30, what="the autoscaler idle")
            wait_for(
                lambda: not client.allocations(live=True).allocations,
                timeout=30,
                what="the autoscaler to see its jobs end",
            )
            found = client.allocations()
            assert len(found.allocations) == 2, found  # the restart submitted nothing more
            assert seen_at_once <= 2
            (scaler,) = found.autoscalers
            assert scaler.status["idle"] is True, scaler.status
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
    text = log.read_text()
    assert text.count("submitted slurm job") == 2, text
    assert "holding its lease" in text and "waiting:" in text  # the restart waited out the TTL
    jobs = {a.job_id: a for a in client.allocations().allocations}
    assert {a.state for a in jobs.values()} <= {"ended", "cancelled"}
    ran = [a for a in jobs.values() if a.agents]
    assert ran, jobs  # agents registered with their job's id in their labels
    assert all(agent.endswith("(stopped)") for a in ran for agent in a.agents), ran
    assert all(a.submitted_for["cores"] == 1 for a in jobs.values())


def test_a_record_needing_more_gpus_than_a_node_has_is_reported_not_submitted_for(
    live_server: LiveServer, slurm: Slurm, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("gpus")
    specs = [wire.RecordSpec(key=f"g{i}", command="true", run_args={"gpus": 4}) for i in range(3)]
    client.submit(campaign.id, specs)
    name = f"t{uuid.uuid4().hex[:10]}"
    log = tmp_path / "autoscale.log"
    once = autoscaler(
        live_server, tmp_path, name, "--campaign", str(campaign.id), "--once", log=log
    )
    assert once.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert "not submitting for 3 ready record(s): 4 GPUs; a node has 0" in text, text
    assert "idle" in text and "submitted" not in text
    assert not our_jobs(f"fh-{name}")
    found = client.allocations()
    assert found.allocations == []
    (scaler,) = found.autoscalers
    assert scaler.status["unfit"] == [
        {"count": 3, "reason": "4 GPUs; a node has 0", "runner": "subprocess"}
    ]


def test_an_sbatch_error_is_shown_and_backed_off_not_retried_at_once(
    live_server: LiveServer, slurm: Slurm, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("refused")
    client.submit(campaign.id, [wire.RecordSpec(key="r", command="true")])
    name = f"t{uuid.uuid4().hex[:10]}"
    log = tmp_path / "autoscale.log"
    args = ["--campaign", str(campaign.id), "--interval", "5", "--once"]
    once = autoscaler(live_server, tmp_path, name, *args, "--partition", f"nope-{name}", log=log)
    assert once.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert "sbatch failed: sbatch: error: invalid partition specified" in text, text
    assert "next try in 10s" in text  # 5 s x 2^1
    assert client.allocations().allocations == [] and not our_jobs(f"fh-{name}")
    (scaler,) = client.allocations().autoscalers
    assert "invalid partition" in scaler.status["last_error"]
