"""The disk guard measures a real filesystem and pauses above its limit."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.runtime.agent import Agent, AgentConfig
from farmhand.runtime.resources.diskguard import DiskGuard, parse_limit, used_percent
from tests.runtime.test_agent import Running
from tests.support.filesystems import SmallFilesystem

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe


def test_limits() -> None:
    assert parse_limit("90%") == 90.0
    assert parse_limit(" 75.5 ") == 75.5
    assert parse_limit("100%") == 100.0
    for bad in ("0%", "101", "-5%", "ninety", "nan", ""):
        with pytest.raises(ValueError, match="give a percentage such as 90%"):
            parse_limit(bad)


def test_used_percent_agrees_with_df(tmp_path: Path) -> None:
    out = subprocess.run(
        ["df", "--output=pcent", str(tmp_path)], capture_output=True, text=True, check=True
    )
    df = float(out.stdout.splitlines()[1].strip().rstrip("%"))
    # df rounds up to a whole percent; the filesystem may change a little between the two.
    assert df - 2 <= used_percent(tmp_path) <= df + 1


def test_pauses_above_the_limit_and_resumes_when_space_frees(
    small_fs: SmallFilesystem, caplog: pytest.LogCaptureFixture
) -> None:
    guard = DiskGuard(small_fs.path, 50.0)
    caplog.set_level(logging.INFO, logger="farmhand.agent")
    assert guard.check() is None and guard.used is not None and guard.used < 50
    small_fs.fill_to(60)
    reason = guard.check()
    assert reason is not None and reason.startswith("disk 6") and "limit 50%" in reason
    assert guard.paused == reason
    guard.check()  # still full: said once, not at every check
    warnings = [r for r in caplog.records if "claiming nothing until space frees" in r.message]
    assert len(warnings) == 1
    small_fs.free()
    assert guard.check() is None and guard.paused is None
    assert any("under the 50% limit again: claiming again" in r.message for r in caplog.records)


def test_without_a_limit_it_only_measures(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path, None)
    assert guard.check() is None and guard.used is not None


def test_a_missing_directory_pauses_a_guarded_agent(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path / "gone", 90.0)
    reason = guard.check()
    assert reason is not None and reason.startswith("cannot measure the disk of")
    assert DiskGuard(tmp_path / "gone", None).check() is None


def test_an_agent_started_on_a_full_disk_never_claims(
    live_server_factory: Callable[..., LiveServer], small_fs: SmallFilesystem, probe: Probe
) -> None:
    server = live_server_factory(lease_ttl=1.5)  # a heartbeat every 0.5 s
    client = server.client()
    campaign = client.create_campaign("full")
    client.submit(campaign.id, [wire.RecordSpec(key="waits", command="true")])
    small_fs.fill_to(60)
    config = AgentConfig(
        server=server.url,
        token=server.admin_token,
        workdir=small_fs.path / "work",
        disk_limit=50,
        poll_wait=1,
    )
    agent = Agent(config)
    running = Running(agent)
    probe.wait_until(
        lambda: agent.heartbeat is not None and agent.heartbeat.beats >= 3, what="three beats"
    )
    assert agent.paused is not None and agent.paused.startswith("disk ")
    assert client.runs_page().items == []  # not even one claim slipped through at start
    (me,) = client.agents()
    assert me.status is not None and me.status.paused == agent.paused
    small_fs.free()
    probe.wait_until(lambda: agent.counts["done"] == 1, what="the record, once space is free")
    agent.stop("test")
    assert running.finish(timeout=30) == 0


def test_a_long_pause_reason_still_fits_the_heartbeat(tmp_path: Path) -> None:
    agent = Agent(AgentConfig(server="http://127.0.0.1:9", workdir=tmp_path))
    agent.paused = "disk 97.0% used, limit 90% (" + "/very/deep" * 80 + ")"
    assert len(agent.status().paused or "") == 500
