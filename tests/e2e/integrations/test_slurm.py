"""deploy/slurm/farmhand-agent.sbatch under a real Slurm (single node, this machine): a
campaign drains through it, USR1 reaches the agents, and a record that outlives its job is
checkpointed, given back and finished by the next job, without a failed attempt."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import wait_for
from tests.support.slurm import SBATCH_SCRIPT, Slurm

# The server's database plays no part in these tests: one backend is enough.
pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["sqlite"])]

#: Counts `steps` one-second steps, resuming from its checkpoint file; on USR1 saves the step
#: it reached and exits 0 (like a code that checkpoints and stops when asked).
STEPPER = (
    'ckpt={dir}/"$FARMHAND_RECORD_KEY".step; step=$(cat "$ckpt" 2>/dev/null || echo 0); '
    'start=$step; echo "$FARMHAND_RECORD_KEY from $step" >> {dir}/executions; '
    "trap 'echo $step > \"$ckpt\"; exit 0' USR1; "
    "while [ $step -lt {steps} ]; do sleep 1; step=$((step + 1)); done; "
    """printf '{{"steps": %d, "resumed_from": %d}}' $step $start > results.json"""
)


def job_env(server: LiveServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """What the job inherits: server, token, `farmhand` on PATH, scratch and outbox here."""
    bin_dir = str(Path(sys.executable).parent)
    (tmp_path / "scratch").mkdir(exist_ok=True)
    token_file = tmp_path / "token"  # what the script expects: the token in a private file
    token_file.write_text(server.admin_token + "\n")
    token_file.chmod(0o600)
    env = {
        k: v
        for k, v in server.client_env().items()
        if k not in ("FARMHAND_TOKEN", "FARMHAND_ADMIN_TOKEN")
    }
    return {
        **env,
        "FARMHAND_TOKEN_FILE": str(token_file),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path / "scratch"),  # the node-local scratch the script looks for
        "FARMHAND_OUTBOX_ROOT": str(tmp_path / "outbox"),
        **extra,
    }


def test_a_campaign_drains_through_the_sbatch_script(
    live_server: LiveServer, slurm: Slurm, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("slurm")
    command = """printf '{"host": "%s"}' "$(hostname -s)" > results.json"""
    client.submit(campaign.id, [wire.RecordSpec(key=f"r{i}", command=command) for i in range(12)])
    env = job_env(live_server, tmp_path, FARMHAND_EXIT_WHEN_IDLE="3")
    options = ["--cpus-per-task=2", "--time=5", f"--output={tmp_path}/job-%j.out"]
    job = slurm.sbatch(*options, str(SBATCH_SCRIPT), "--poll", "1", env=env, cwd=tmp_path)
    state = slurm.wait(job, timeout=120)
    output = (tmp_path / f"job-{job}.out").read_text()
    assert state == "COMPLETED", output

    records = list(client.records(campaign_id=campaign.id))
    assert len(records) == 12 and {r.state for r in records} == {wire.RecordState.done}
    (agent,) = client.agents()
    assert agent.name.endswith(f"-job{job}") and agent.state == "stopped"
    assert agent.slots == 2  # the CPUs of the allocation
    assert {r.agent_id for r in client.runs_page(limit=100).items} == {agent.id}
    # The run directories went to node-local scratch ($TMPDIR), one work dir per job; each
    # left the node once its archive was on the server, and its record's directory with it
    # (the campaign's stays, empty).
    (campaign_dir,) = (tmp_path / "scratch" / f"farmhand-{job}" / "runs").iterdir()
    assert list(campaign_dir.iterdir()) == []
    assert all(r.runs and r.runs[-1].archive for r in map(client.record, (r.id for r in records)))
    assert "2 slot(s) per node" in output and "agents finished with status 0" in output


def test_usr1_to_the_batch_script_drains_the_agents(
    live_server: LiveServer, slurm: Slurm, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("usr1")
    command = STEPPER.format(dir=tmp_path, steps=600)
    client.submit(campaign.id, [wire.RecordSpec(key="long", command=command)])
    env = job_env(live_server, tmp_path)
    options = ["--time=10", f"--output={tmp_path}/job-%j.out"]
    agent_options = ["--checkpoint-signal", "USR1", "--checkpoint-grace", "30"]
    job = slurm.sbatch(*options, str(SBATCH_SCRIPT), *agent_options, env=env, cwd=tmp_path)
    wait_for(lambda: (tmp_path / "executions").exists(), what="the record to start")
    slurm.signal_batch(job, "USR1")  # what --signal=B:USR1@… does near the end
    assert slurm.wait(job, timeout=90) == "COMPLETED"  # minutes before its time limit
    (record,) = client.records(campaign_id=campaign.id)
    assert (record.state, record.attempts) == ("ready", 0)
    assert int((tmp_path / "long.step").read_text()) >= 0  # it checkpointed
    output = (tmp_path / f"job-{job}.out").read_text()
    assert "USR1: draining the agents" in output


def test_a_record_that_outlives_its_job_finishes_in_the_next(
    live_server: LiveServer, slurm: Slurm, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("walltime")
    command = STEPPER.format(dir=tmp_path, steps=70)  # 70 s of work: more than a 1-minute job
    client.submit(campaign.id, [wire.RecordSpec(key="long", command=command)])
    env = job_env(live_server, tmp_path, FARMHAND_EXIT_WHEN_IDLE="2")

    def submit(minutes: int) -> str:
        # The agent learns the job's end from Slurm and drains 45 s before it. The USR1 is
        # asked for 1 s before the end so that it cannot come first (Slurm sends it up to
        # 30 s early); the script's own @180 would come at once in so short a job.
        return slurm.sbatch(
            f"--time={minutes}",
            "--signal=B:USR1@1",
            f"--output={tmp_path}/job-%j.out",
            str(SBATCH_SCRIPT),
            *("--walltime-margin", "45", "--checkpoint-signal", "USR1", "--poll", "1"),
            env=env,
            cwd=tmp_path,
        )

    first = submit(1)  # drains ~15 s in
    assert slurm.wait(first, timeout=90) == "COMPLETED"  # it ended itself, not by TIMEOUT
    output = (tmp_path / f"job-{first}.out").read_text()
    checkpointed = int((tmp_path / "long.step").read_text())
    assert 0 < checkpointed < 70, output
    (record,) = client.records(campaign_id=campaign.id)
    assert (record.state, record.attempts) == ("ready", 0), output

    second = submit(2)  # resumes from the checkpoint and finishes within its 75 s
    assert slurm.wait(second, timeout=150) == "COMPLETED"
    full = client.record(record.id)
    assert full.state == "done", (tmp_path / f"job-{second}.out").read_text()
    assert full.result == {"steps": 70, "resumed_from": checkpointed}
    assert full.runs is not None
    assert [r.state for r in full.runs] == ["released", "done"]  # no failed attempt
    assert full.attempts == 1
    assert "walltime drain" in (full.runs[0].error or "")
    names = {a.id: a.name for a in client.agents()}
    assert names[full.runs[0].agent_id or 0].endswith(f"-job{first}")
    assert names[full.runs[1].agent_id or 0].endswith(f"-job{second}")
    assert (tmp_path / "executions").read_text().splitlines() == [
        "long from 0",
        f"long from {checkpointed}",
    ]
