"""Claims match what an agent offers: the claim query filters by the `runners` and the `free`
share every claim sends, so an agent never receives a record it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import start_agent

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("run_args", "flags"),
    [({"runner": "lammps"}, []), ({"gpus": 2}, ["--gpus", "0"])],
    ids=["runner", "gpus"],
)
def test_an_agent_never_receives_records_it_cannot_run(
    live_server: LiveServer, tmp_path: Path, run_args: dict, flags: list[str]
) -> None:
    live_server.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    client = live_server.client()
    campaign = client.create_campaign("unrunnable")
    # Beside it a record the agent can run: an agent that claims nothing at all fails here.
    specs = [wire.RecordSpec(key="k", command="true", run_args=run_args)]
    specs += [wire.RecordSpec(key="runnable", command="true")]
    client.submit(campaign.id, specs)
    agent = start_agent(live_server, tmp_path, "a", "--exit-when-idle", "2", *flags)
    assert agent.wait(timeout=120) == 0
    records = {r.key: client.record(r.id) for r in client.records(campaign_id=campaign.id)}
    assert [run.state for run in records["runnable"].runs] == ["done"]
    assert records["k"].runs == [] and records["k"].state == wire.RecordState.ready
