"""Runners start real processes in their own group and stop the whole group."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand.runtime.runners import Launch, compose_script, group_alive
from farmhand.runtime.runners.subprocess import SubprocessRunner

if TYPE_CHECKING:
    from tests.support.agent_side import Probe, Spawner


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


def start(runner: SubprocessRunner, command: str, tmp_path: Path, **env: str) -> int | None:
    launch = Launch(
        command=command,
        run_dir=tmp_path,
        stdout=tmp_path / "stdout.txt",
        stderr=tmp_path / "stderr.txt",
        base_env={"PATH": os.environ["PATH"], "FROM_AGENT": "agent", "SHARED": "agent"},
        run_env=env,
    )
    handle = runner.start(launch)
    try:
        return handle.wait(15)
    finally:
        handle.terminate(1)


def test_setup_lines_run_first_in_the_same_shell(tmp_path: Path) -> None:
    (tmp_path / "env.sh").write_text("LOADED=yes\n")
    runner = SubprocessRunner("native", setup=[". ./env.sh  # a comment", 'echo "setup $LOADED"'])
    assert start(runner, 'echo "command $LOADED"\necho second line', tmp_path) == 0
    assert (tmp_path / "stdout.txt").read_text().splitlines() == [
        "setup yes",
        "command yes",
        "second line",
    ]


def test_a_failing_setup_line_ends_the_run_with_its_status(tmp_path: Path) -> None:
    runner = SubprocessRunner("native", setup=["exit 7"])
    assert start(runner, "echo ran > ran.txt", tmp_path) == 7
    assert not (tmp_path / "ran.txt").exists()


def test_environment_precedence(tmp_path: Path) -> None:
    """The agent's environment, then the definition's `env`, then the run's."""
    runner = SubprocessRunner("native", env={"SHARED": "definition", "DEF": "definition"})
    command = 'echo "$FROM_AGENT $SHARED $DEF $RUN"'
    assert start(runner, command, tmp_path, RUN="run", DEF="run") == 0
    assert (tmp_path / "stdout.txt").read_text() == "agent definition run run\n"


@pytest.mark.parametrize(
    ("setup", "command", "script"),
    [
        ((), "true", "true"),
        (("a", "b # c"), "x\ny", "{ a\n} || exit $?\n{ b # c\n} || exit $?\nx\ny"),
    ],
)
def test_compose_script(setup: tuple[str, ...], command: str, script: str) -> None:
    assert compose_script(setup, command) == script
