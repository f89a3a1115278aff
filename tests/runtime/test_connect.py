"""An agent started while its server cannot be reached waits for it (`--connect-timeout`),
saying so in its log, instead of exiting at once and wasting a batch job's allocation."""

from __future__ import annotations

import subprocess
from pathlib import Path

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import FARMHAND, wait_for
from tests.support.cutoff import Cutoff


def test_an_agent_waits_for_an_unreachable_server_then_works(
    live_server: LiveServer, cutoff: Cutoff, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("blip")
    client.submit(campaign.id, [wire.RecordSpec(key="k", command="echo '{}' > results.json")])
    cutoff.cut()  # every connection dropped: the server is "away"
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [*FARMHAND, "agent", "--server", cutoff.url, "--campaign", "blip",
             "--workdir", str(tmp_path / "work"), "--exit-when-idle", "1",
             "--connect-timeout", "120"],
            env=live_server.client_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for(lambda: "server unavailable, retrying" in log.read_text(), what="a retry")
            assert agent.poll() is None  # still waiting, not exited
            cutoff.restore()
            assert agent.wait(timeout=120) == 0, log.read_text()
        finally:
            if agent.poll() is None:
                agent.kill()
    text = log.read_text()
    assert "looking up --campaign at" in text and "(for up to 120s)" in text
    assert client.campaign(campaign.id).counts[wire.RecordState.done] == 1


def test_an_agent_gives_up_after_its_connect_timeout(cutoff: Cutoff, tmp_path: Path) -> None:
    cutoff.cut()
    run = subprocess.run(
        [*FARMHAND, "agent", "--server", cutoff.url, "--workdir", str(tmp_path / "w"),
         "--connect-timeout", "1"],
        env={"FARMHAND_TOKEN": "fh_any", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "registering with" in run.stderr and "cannot reach" in run.stderr
