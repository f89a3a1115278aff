"""`spawn_shell`: the default runner's one-call start (posix_spawn), and `Spawned`, the
handle it gives: the same directory, umask, files, session and signals as Popen gave. Every
test runs through both spawns: the C library's through ctypes (the default: it frees the GIL
while the child starts) and `os.posix_spawn` (FARMHAND_SPAWN=os)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import farmhand.runtime.runners.subprocess as subprocess_runner
from farmhand.runtime.runners import Launch, RunnerFailure, spawn
from farmhand.runtime.runners.spawn import CD_FAILED, Spawned, spawn_shell
from farmhand.runtime.runners.subprocess import SubprocessRunner


@pytest.fixture(autouse=True, params=["libc", "os"])
def spawner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "os":
        monkeypatch.setenv("FARMHAND_SPAWN", "os")
    else:
        monkeypatch.delenv("FARMHAND_SPAWN", raising=False)
        assert spawn._libc() is not None, "the C library's posix_spawn is out of ctypes' reach"
    return request.param


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


@pytest.mark.parametrize("spawner", ["libc"], indirect=True)
def test_other_threads_run_python_while_a_child_starts(tmp_path: Path) -> None:
    """The vfork-like start suspends the calling thread until the child exec's; with the C
    library's spawn the GIL is free meanwhile. The child's stdout is a fifo nobody reads,
    so it blocks opening it before its exec, and the spawn with it: only this thread,
    running Python, can open the reading end that lets both go on."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Should the GIL stay held, the test could not end: this opens the fifo after a while.
    rescue = subprocess.Popen(["sh", "-c", f"sleep 30; exec 3< '{fifo}'"])
    inside = threading.Event()
    returned: list[Spawned] = []

    def start_it() -> None:
        inside.set()
        returned.append(spawn_shell("/bin/sh", "true", cwd=tmp_path, env={}, stdout=fifo,
                                    stderr=tmp_path / "err"))  # fmt: skip

    starter = threading.Thread(target=start_it)
    try:
        starter.start()
        assert inside.wait(15)
        deadline = time.monotonic() + 60
        while not returned and not _unexeced_child(os.getpid()):  # it is inside the spawn
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert not returned, "the spawn returned before anything read its child's stdout"
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # Python, on this thread
        starter.join(15)
        os.close(reader)
        assert returned and returned[0].wait(15) == 0
    finally:
        rescue.kill()
        rescue.wait()


def _unexeced_child(parent: int) -> bool:
    """Whether `parent` has a child that has not exec'd yet (it still runs Python)."""
    me = Path(f"/proc/{parent}/comm").read_text()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == parent:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, _, rest = stat.partition(") ")
        if int(rest.split()[1]) == parent and comm.split(" (", 1)[1] + "\n" == me:
            return True
    return False
