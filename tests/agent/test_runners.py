"""Runners start real processes in their own group and stop the whole group."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand.agent import runners
from farmhand.agent.runners import group_alive, register_runner, runner_for, runner_names
from farmhand.agent.runners.subprocess import SubprocessRunner

if TYPE_CHECKING:
    from tests.agent.conftest import Probe, Spawner


def test_runner_for_defaults_to_subprocess() -> None:
    assert isinstance(runner_for(), SubprocessRunner)
    assert isinstance(runner_for("subprocess"), SubprocessRunner)
    assert "subprocess" in runner_names()


def test_unknown_runner_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown runner 'podman'.*'subprocess'"):
        runner_for("podman")


def test_runners_are_pluggable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runners._FACTORIES, "custom", SubprocessRunner)
    assert isinstance(runner_for("custom"), SubprocessRunner)
    register_runner("custom", lambda: runner_for("subprocess"))
    assert isinstance(runner_for("custom"), SubprocessRunner)


def test_exit_code_and_output_files(spawn: Spawner, tmp_path: Path) -> None:
    handle = spawn("echo out; echo err >&2; exit 3")
    assert handle.wait(15) == 3
    assert handle.poll() == 3
    assert (tmp_path / "stdout.txt").read_text() == "out\n"
    assert (tmp_path / "stderr.txt").read_text() == "err\n"


def test_cwd_env_and_empty_stdin(spawn: Spawner, tmp_path: Path) -> None:
    handle = spawn('pwd; echo "$GREETING"; cat; echo end', env={"GREETING": "hello"})
    assert handle.wait(15) == 0
    lines = (tmp_path / "stdout.txt").read_text().splitlines()
    assert Path(lines[0]).resolve() == tmp_path.resolve()
    assert lines[1:] == ["hello", "end"]  # `cat` saw end of input at once


def test_each_command_leads_its_own_process_group(spawn: Spawner) -> None:
    handle = spawn("sleep 1000")
    assert os.getpgid(handle.pid) == handle.pid
    assert os.getpgid(handle.pid) != os.getpgid(0)
    assert handle.wait(0.05) is None
    handle.terminate(5)


def test_killed_by_signal_is_reported_negative(spawn: Spawner) -> None:
    assert spawn("kill -KILL $$").wait(15) == -signal.SIGKILL


def test_terminate_kills_grandchildren(spawn: Spawner, tmp_path: Path, probe: Probe) -> None:
    handle = spawn("sleep 1000 & echo $! > child.pid; wait")
    child = probe.read_pid(tmp_path / "child.pid")
    assert not probe.is_dead(child)
    assert handle.terminate(grace=10) == -signal.SIGTERM
    assert probe.is_dead(child)
    assert probe.is_dead(handle.pid)
    assert not group_alive(handle.pid)


def test_terminate_reaches_the_group_after_its_leader_exited(
    spawn: Spawner, tmp_path: Path, probe: Probe
) -> None:
    handle = spawn("sleep 1000 & echo $! > child.pid")
    child = probe.read_pid(tmp_path / "child.pid")
    assert handle.wait(15) == 0
    assert not probe.is_dead(child)  # the background job outlived the shell
    assert group_alive(handle.pid)
    assert handle.terminate(grace=10) == 0  # the command's own status is kept
    assert probe.is_dead(child)


def test_terminate_escalates_to_sigkill(spawn: Spawner, tmp_path: Path, probe: Probe) -> None:
    # Both the shell and its background job ignore SIGTERM (ignored signals survive exec).
    handle = spawn("trap '' TERM; sleep 1000 & echo $! > child.pid; wait")
    child = probe.read_pid(tmp_path / "child.pid")
    assert handle.terminate(grace=0.2) == -signal.SIGKILL
    assert probe.is_dead(child)


def test_terminate_twice_and_after_exit(spawn: Spawner) -> None:
    handle = spawn("exit 4")
    assert handle.wait(15) == 4
    assert handle.terminate(1) == 4
    assert handle.terminate(1) == 4
    sleeper = spawn("sleep 1000")
    assert sleeper.terminate(5) == -signal.SIGTERM
    assert sleeper.terminate(5) == -signal.SIGTERM


def test_reap_strays_stops_what_a_finished_command_left(
    spawn: Spawner, tmp_path: Path, probe: Probe
) -> None:
    handle = spawn("sleep 1000 & echo $! > child.pid")
    child = probe.read_pid(tmp_path / "child.pid")
    assert handle.wait(15) == 0
    handle.reap_strays(grace=5)
    assert probe.is_dead(child)


def test_group_alive_is_false_for_an_unused_group() -> None:
    # pid_max is at most 2**22 on Linux, so this pgid cannot exist.
    assert group_alive(2**22 + 12345) is False
