"""The autoscaler against PBS, played by fake `qsub`/`qstat`/`qdel` scripts on PATH that keep
their jobs as files (one per job: its state letter), and a real server: submission with the
job's size and the agents' options, adoption after a restart, backoff and a lowered maximum
on a limit error, cancelling pending jobs when nothing waits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.runtime.autoscale.loop import Autoscaler, Options
from farmhand.runtime.autoscale.pbs import Pbs
from tests.conftest import LiveServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

QSUB = """#!/bin/bash
set -e
d={dir}
if [[ -f $d/refuse ]]; then cat $d/refuse >&2; exit 38; fi
n=$(( $(cat $d/next 2>/dev/null || echo 100) + 1 )); echo $n > $d/next
printf '%s\\n' "$@" > $d/$n.args; echo "$FARMHAND_AGENT_ARGS" > $d/$n.agent
echo "$FARMHAND_TOKEN_FILE" > $d/$n.token
echo Q > $d/$n.state
echo $n.fakepbs
"""
QSTAT = """#!/bin/bash
d={dir}; rc=0
for job in "$@"; do
  n=${{job%%.*}}
  if [[ -f $d/$n.state ]]; then echo "$n.fakepbs farmhand me 00:00:00 $(cat $d/$n.state) workq"
  else echo "qstat: Unknown Job Id $job" >&2; rc=153; fi
done
exit $rc
"""
QDEL = """#!/bin/bash
d={dir}
for job in "$@"; do rm -f $d/${{job%%.*}}.state; echo $job >> $d/deleted; done
"""


@pytest.fixture
def pbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of fake PBS commands (first on PATH) and their jobs."""
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, text in (("qsub", QSUB), ("qstat", QSTAT), ("qdel", QDEL)):
        (bin_dir / name).write_text(text.format(dir=jobs))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return jobs


def scaler(server: LiveServer, campaign_id: int, **overrides: object) -> Autoscaler:
    script = Path(__file__).resolve().parents[3] / "deploy" / "pbs" / "farmhand-agent.pbs"
    env = {**os.environ, "FARMHAND_TOKEN_FILE": "/agent/token"}
    options = Options(
        name=f"pbs:campaign={campaign_id}",
        time_limit=1800,
        max_jobs=2,
        max_pending=1,
        cores=4,
        campaign_id=campaign_id,
        agent_args=["--exit-when-idle", "30", "--campaign", str(campaign_id)],
        interval=1,
        lease_ttl=30,
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    return Autoscaler(server.client(), Pbs(script, queue="workq", env=env), options)


def allocations(server: LiveServer) -> list[wire.Allocation]:
    return server.client().allocations().allocations


def test_jobs_are_submitted_adopted_limited_and_cancelled(
    live_server: LiveServer, pbs: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("pbs")
    client.submit(campaign.id, [wire.RecordSpec(key=f"r{i}", command="true") for i in range(20)])
    first = scaler(live_server, campaign.id)
    assert first.acquire(wait=False)
    plan = first.cycle()
    assert plan is not None and len(plan.submit) == 1  # --max-pending 1
    args = (pbs / "101.args").read_text().split("\n")
    assert args[:6] == [
        "-V",
        "-N",
        f"fh-pbs_campaign_{campaign.id}",
        "-l",
        "select=1:ncpus=4",
        "-l",
    ]
    assert args[6] == "walltime=00:30:00" and args[7:9] == ["-q", "workq"]
    assert args[9].endswith("deploy/pbs/farmhand-agent.pbs")
    assert (pbs / "101.agent").read_text().split() == [
        "--exit-when-idle",
        "30",
        "--campaign",
        str(campaign.id),
    ]
    assert (pbs / "101.token").read_text().strip() == "/agent/token"
    (made,) = allocations(live_server)
    assert (made.job_id, made.state, made.scheduler) == ("101.fakepbs", "pending", "pbs")
    assert made.submitted_for["cores"] == 4 and made.submitted_for["records"] == 20

    # A second autoscaler with the same filters is refused while the first holds the lease.
    assert not scaler(live_server, campaign.id).acquire(wait=False)

    (pbs / "101.state").write_text("R\n")
    first.cycle()  # running now: room for one more pending job
    states = {a.job_id: a.state for a in allocations(live_server)}
    assert states == {"101.fakepbs": "running", "102.fakepbs": "pending"}
    first.cycle()  # at --max-jobs 2: nothing more
    assert len(allocations(live_server)) == 2

    # The autoscaler dies; a new one adopts both jobs from the server and submits nothing.
    dead, first.token = first.token, None
    assert dead is not None
    client.release_autoscaler(first.options.name, token=dead)  # as if its lease ran out
    again = scaler(live_server, campaign.id)
    assert again.acquire(wait=False)
    again.cycle()
    assert len(allocations(live_server)) == 2 and not (pbs / "103.args").exists()

    # The first job ends; the batch system refuses a new one: limit recognised, backoff.
    (pbs / "101.state").unlink()
    (pbs / "102.state").write_text("R\n")
    (pbs / "refuse").write_text("qsub: would exceed queue generic's per-user limit\n")
    again.cycle()
    assert {a.job_id: a.state for a in allocations(live_server)}["101.fakepbs"] == "ended"
    assert again.effective_max == 1 and again.failures == 1
    assert "per-user limit" in (again.status["last_error"] or "")
    again.cycle()  # backing off: qsub is not called again at once
    assert again.failures == 1

    # Nothing waits any more: the pending job is cancelled, the autoscaler is idle.
    (pbs / "102.state").write_text("Q\n")
    client.cancel(filter=wire.RecordFilter(campaign_id=campaign.id))
    plan = again.cycle()
    assert plan is not None and plan.idle and plan.cancel == ["102.fakepbs"]
    assert (pbs / "deleted").read_text().split() == ["102.fakepbs"]
    assert {a.job_id: a.state for a in allocations(live_server)}["102.fakepbs"] == "cancelled"
    again.release()
    (status,) = client.allocations().autoscalers
    assert status.status["idle"] is True and status.status["message"].startswith("idle")
