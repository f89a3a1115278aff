"""`spawn_shell`: the default runner's one-call start (posix_spawn), and `Spawned`, the
handle it gives: the same directory, umask, files, session and signals as Popen gave."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

import farmhand.runtime.runners.subprocess as subprocess_runner
from farmhand.runtime.runners import Launch, RunnerFailure
from farmhand.runtime.runners.spawn import CD_FAILED, Spawned, spawn_shell
from farmhand.runtime.runners.subprocess import SubprocessRunner


def start(run_dir: Path, script: str, *, umask: int | None = None, shell: str = "/bin/sh"):
    return spawn_shell(shell, script, cwd=run_dir, env=dict(os.environ), umask=umask,
                       stdout=run_dir / "out", stderr=run_dir / "err")  # fmt: skip


def test_the_command_runs_in_its_directory_even_one_a_shell_would_misread(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "it's a $dir; `x` -n"
    run_dir.mkdir()
    child = start(run_dir, "pwd -P; echo $#")
    assert child.wait(15) == 0
    assert (run_dir / "out").read_text().splitlines() == [str(run_dir.resolve()), "0"]


def test_output_is_appended_and_stdin_is_empty(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("before\n")
    child = start(tmp_path, "cat; echo after; echo oops >&2; exit 4")
    assert child.wait(15) == 4
    assert (tmp_path / "out").read_text() == "before\nafter\n"
    assert (tmp_path / "err").read_text() == "oops\n"


def test_the_umask_is_the_one_asked_for(tmp_path: Path) -> None:
    child = start(tmp_path, "umask; touch made", umask=0o027)
    assert child.wait(15) == 0
    assert (tmp_path / "out").read_text().strip() == "0027"
    assert (tmp_path / "made").stat().st_mode & 0o777 == 0o640


def test_a_new_session_and_the_signals_python_ignores_back_to_default(tmp_path: Path) -> None:
    # The agent ignores SIGPIPE (Python does); a command must not inherit that.
    child = start(tmp_path, "sleep 30")
    try:
        assert os.getsid(child.pid) == child.pid == os.getpgid(child.pid)
        status = Path(f"/proc/{child.pid}/status").read_text()
        ignored = int(
            next(x for x in status.splitlines() if x.startswith("SigIgn:")).split()[1], 16
        )
        assert not ignored & (1 << (signal.SIGPIPE - 1))
    finally:
        os.killpg(child.pid, signal.SIGKILL)
    assert child.wait(15) == -signal.SIGKILL


def test_a_directory_gone_before_the_start_fails_the_command(tmp_path: Path) -> None:
    child = spawn_shell("/bin/sh", "echo ran", cwd=tmp_path / "gone", env={},
                        stdout=tmp_path / "out", stderr=tmp_path / "err")  # fmt: skip
    assert child.wait(15) == CD_FAILED
    assert (tmp_path / "out").read_text() == ""
    assert "gone" in (tmp_path / "err").read_text()


def test_an_output_file_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised:
        spawn_shell("/bin/sh", "true", cwd=tmp_path, env={}, stdout=tmp_path / "out",
                    stderr=tmp_path / "no" / "err")  # fmt: skip
    assert raised.value.filename == str(tmp_path / "no" / "err")


def test_a_shell_that_cannot_be_executed_is_the_runners_failure(tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised:
        start(tmp_path, "true", shell=str(tmp_path / "no-shell"))
    assert raised.value.filename == str(tmp_path / "no-shell")
    # Through the runner: its program is at fault, not the calculation.
    runner = SubprocessRunner()
    launch = Launch(command="true", run_dir=tmp_path, stdout=tmp_path / "o",
                    stderr=tmp_path / "no" / "e")  # fmt: skip
    with pytest.raises(OSError) as raised:
        runner.start(launch)
    assert not isinstance(raised.value, RunnerFailure)


def test_wait_times_out_poll_never_blocks_and_both_agree(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # first: the command blocks reading it until the test writes
    child = start(tmp_path, "read x < fifo; exit 7")
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.05)
    with open(fifo, "w") as writer:
        writer.write("go\n")
    assert child.wait(15) == 7
    assert child.poll() == 7 and child.returncode == 7
    assert child.wait() == 7  # reaped already: the status is kept


def test_a_child_reaped_elsewhere_counts_as_exited(tmp_path: Path) -> None:
    child = start(tmp_path, "exit 3")
    os.waitpid(child.pid, 0)  # as a SIGCHLD handler set to SIG_IGN would
    assert Spawned.wait(child) == 0  # what Popen says too


def test_without_posix_spawn_the_default_runner_uses_popen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess_runner, "SPAWNS", False)
    launch = Launch(command="pwd; umask", run_dir=tmp_path, stdout=tmp_path / "o",
                    stderr=tmp_path / "e", base_env=dict(os.environ), umask=0o027)  # fmt: skip
    handle = SubprocessRunner().start(launch)
    assert not isinstance(handle._popen, Spawned)
    assert handle.wait(15) == 0
    assert (tmp_path / "o").read_text().split() == [str(tmp_path), "0027"]
