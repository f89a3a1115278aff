"""The loop with a scheduler played in Python: failed submissions back off exponentially
(interval x 2^n, at most --max-backoff) and say why, a limit error lowers the maximum, a
success resets the count; a job carrying its name that was never recorded is adopted."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from farmhand import wire
from farmhand.runtime.autoscale.loop import Autoscaler, Options
from farmhand.runtime.autoscale.schedulers import JobRequest, NodeConfig, SchedulerError
from tests.conftest import LiveServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


class Refusing:
    """A scheduler whose submissions fail with `error` until told otherwise."""

    name = "slurm"

    def __init__(self) -> None:
        self.error: SchedulerError | None = SchedulerError("sbatch failed: socket timed out")
        self.calls = 0
        self.live: dict[str, str] = {}

    def submit(self, request: JobRequest) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        job = str(100 + self.calls)
        self.live[job] = "pending"
        return job

    def query(self, job_ids: Sequence[str], *, job_name: str) -> dict[str, str]:
        return dict(self.live)

    def cancel(self, job_ids: Sequence[str]) -> None:
        for job in job_ids:
            self.live.pop(job, None)

    def node_config(self) -> NodeConfig | None:
        return NodeConfig(cores=2, gpus=0)


def test_failures_back_off_exponentially_and_limits_lower_the_maximum(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("backoff")
    client.submit(campaign.id, [wire.RecordSpec(key=f"r{i}", command="true") for i in range(9)])
    scheduler = Refusing()
    options = Options(
        name="backoff", time_limit=600, max_jobs=3, max_pending=3, interval=10, max_backoff=35
    )
    scaler = Autoscaler(client, scheduler, options)
    assert scaler.acquire(wait=False)
    waits = []
    for _ in range(4):
        scaler.cycle()
        scaler.cycle()  # backing off: no second call
        waits.append(scaler.backoff_until - time.monotonic())
        scaler.backoff_until = 0  # as if the wait were over
    # 10 x 2, x 4 → capped at 35 (each read a moment after the back-off was set: on a
    # loaded machine that moment can be long, so allow a few seconds of it)
    assert scheduler.calls == 4
    assert all(e - 5 < w <= e for w, e in zip(waits, [20, 35, 35, 35], strict=True)), waits
    assert "socket timed out; next try in 20s" in caplog.text
    assert scaler.status["last_error"] == "sbatch failed: socket timed out"

    scheduler.error = None
    scaler.cycle()
    assert scaler.failures == 0 and sorted(scheduler.live) == ["105", "106", "107"]
    scheduler.live.pop("105")  # one ends; the next submission hits the user's limit
    scheduler.error = SchedulerError("sbatch: error: QOSMaxSubmitJobPerUserLimit", limit=True)
    scaler.cycle()
    assert scaler.effective_max == 2 and scaler.status["max_jobs"] == 2
    assert "the batch system's limit: at most 2 job(s)" in caplog.text
    scaler.backoff_until = 0
    scheduler.error = None
    scaler.cycle()  # after the wait it tries one more than the limit it met
    assert scaler.effective_max == 3 and len(scheduler.live) == 3


def test_a_job_with_its_name_that_was_never_recorded_is_adopted(live_server: LiveServer) -> None:
    """It died between sbatch and recording the job: the batch system still lists a job of
    its name, which the next autoscaler records instead of submitting another."""
    client = live_server.client()
    campaign = client.create_campaign("adopt")
    client.submit(campaign.id, [wire.RecordSpec(key=f"r{i}", command="true") for i in range(9)])
    scheduler = Refusing()
    scheduler.error = None
    scheduler.live = {"4242": "running"}  # what query() finds under the job name
    options = Options(name="adopt", time_limit=600, max_jobs=1, max_pending=1, interval=1)
    scaler = Autoscaler(client, scheduler, options)
    assert scaler.acquire(wait=False)
    plan = scaler.cycle()
    assert plan is not None and plan.submit == [] and scheduler.calls == 0
    (adopted,) = client.allocations().allocations
    assert (adopted.job_id, adopted.state) == ("4242", "running")
    assert adopted.submitted_for == {"adopted": True, "cores": 2}
