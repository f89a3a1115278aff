"""An agent whose runner cannot start commands gives the records back unspent and, after
`BROKEN_AFTER` failures in a row, stops offering the runner and says so (log, heartbeat
status, `GET /status`); its other runners go on working. In-process agent, real server,
stand-ins for a container engine (no podman needed: tests/e2e/integrations has the real one).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.runtime.runners import definitions
from tests.runtime.runners.test_runner_failures import NO_IMAGE
from tests.runtime.test_agent import Running, by_key, make_agent, submit

if TYPE_CHECKING:
    from tests.conftest import LiveServer


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def runners_dir(tmp_path: Path) -> Path:
    """`noimage`: an engine that fails as podman does without its image; `gone`: an engine
    whose program is removed once the definitions are read."""
    directory = tmp_path / "runners.d"
    directory.mkdir()
    for name, script in (("noimage", NO_IMAGE), ("gone", "#!/bin/sh\nexit 0\n")):
        program = tmp_path / f"engine-{name}"
        program.write_text(script)
        program.chmod(0o755)
        (directory / f"{name}.toml").write_text(
            f'[runners.{name}]\nkind = "container"\nengine = "podman"\nimage = "img"\n'
            f'executable = "{program}"\n'
        )
    return directory


def test_a_runner_that_cannot_start_commands_is_dropped_and_named(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = live_server.client()
    spec = wire.RecordSpec
    campaign_id = submit(
        client,
        *(spec(key=f"{name}{i}", command="true", run_args={"runner": name})
          for name in ("noimage", "gone") for i in range(2)),
        spec(key="native", command="true"),
    )  # fmt: skip
    runners = definitions.load([runners_dir(tmp_path)], user_dir=tmp_path / "no-user-dir")
    (tmp_path / "engine-gone").unlink()
    caplog.set_level(logging.INFO, logger="farmhand.agent")
    agent = make_agent(live_server, tmp_path / "work", runners=runners, exit_when_idle=None)
    running = Running(agent)
    try:
        wait_until(lambda: set(agent.runners.broken()) == {"noimage", "gone"}, "both dropped")
        assert agent.runners.offered() == ["subprocess"]

        seen: list[wire.StuckRecords] = []

        def named() -> bool:  # keeps the answer: a later one may differ for a moment
            stuck = client.farm_status().stuck
            if {s.runner for s in stuck} != {"noimage", "gone"}:
                return False
            if any(s.count != 2 for s in stuck):  # one is still being claimed and refused
                return False
            seen[:] = stuck
            return True

        wait_until(named, "GET /status to name both runners")
        messages = {s.runner: s.message for s in seen}
        wait_until(lambda: by_key(client, campaign_id)["native"].state == "done", "native")
        records = by_key(client, campaign_id)
        (me,) = client.agents()
    finally:
        agent.stop("test over")
        assert running.finish(60) == 0
    for key in ("noimage0", "noimage1", "gone0", "gone1"):
        assert (records[key].state, records[key].attempts) == ("ready", 0)  # none spent
    broken = agent.runners.broken()
    assert broken["noimage"].startswith("3 starts in a row failed; the last: ")
    could_not = {
        "noimage": f"{tmp_path}/engine-noimage exited 125 (its own error, not the command's): "
        "Error: farmhand-no-such-image: image not known",
        "gone": f"cannot execute {tmp_path}/engine-gone: No such file or directory",
    }
    for name, why in could_not.items():
        runs = [run for key in (f"{name}0", f"{name}1") for run in records[key].runs or []]
        assert {run.state for run in runs} == {"released"}
        started = f"runner {name!r} could not start the command: {why}"
        # Leases claimed before the runner was dropped are given back without a start.
        refused = f"agent {agent.name}: runner {name!r} is not offered here: {broken[name]}"
        errors = [run.error for run in runs]
        assert errors.count(started) >= 3 and set(errors) <= {started, refused}
    assert me.status is not None and me.status.broken_runners == broken
    assert messages["noimage"] == (
        f"2 ready records need runner 'noimage', offered by no live agent (agent {agent.name} "
        f"stopped offering it: {broken['noimage']})"
    )
    assert f"this agent stops offering runner 'gone': {broken['gone']}" in caplog.text
    assert agent.counts["failed"] == 0 and agent.counts["refused"] >= 6
