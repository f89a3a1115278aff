"""Claims match what an agent offers: the server half of issue 6 (the lead's) makes these pass.

Until then the server hands any agent any record and the agent gives back what it cannot run
(tests/agent/test_loop_resources.py); these strict xfails start to pass, and so fail, the day
the claim query filters by the `runners` and `free` every claim sends: remove the marker then.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand.agent import wire
from tests.conftest import LiveServer
from tests.e2e.test_agents import start_agent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xfail(
        strict=True, reason="server half of issue 6: claims filtered by runners and free share"
    ),
]


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
    client.submit(campaign.id, [wire.RecordSpec(key="k", command="true", run_args=run_args)])
    agent = start_agent(live_server, tmp_path, "a", "--exit-when-idle", "2", *flags)
    assert agent.wait(timeout=120) == 0
    (record,) = client.records(campaign_id=campaign.id)
    assert client.record(record.id).runs == []
