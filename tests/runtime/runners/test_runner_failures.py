"""When the runner itself cannot start the command: `RunnerFailure` at start, an engine's
own error status, and the runners an agent stops offering after failures in a row."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farmhand.runtime.runners import Launch, RunnerFailure, start_group
from farmhand.runtime.runners.container import ContainerRunner
from farmhand.runtime.runners.definitions import BROKEN_AFTER, Entry, Runners
from farmhand.runtime.runners.subprocess import SubprocessRunner

#: A stand-in for podman that fails as podman does when its image does not exist.
NO_IMAGE = "#!/bin/sh\necho 'Error: farmhand-no-such-image: image not known' >&2\nexit 125\n"


def launch(run_dir: Path, command: str = "true") -> Launch:
    run_dir.mkdir(parents=True, exist_ok=True)
    return Launch(
        command=command,
        run_dir=run_dir,
        stdout=run_dir / "stdout.txt",
        stderr=run_dir / "stderr.txt",
        base_env=dict(os.environ),
        name="farmhand-test-failures",
    )


def engine(tmp_path: Path, script: str = NO_IMAGE) -> str:
    path = tmp_path / "fake-podman"
    path.write_text(script)
    path.chmod(0o755)
    return str(path)


def test_a_program_that_cannot_be_executed_is_the_runners_failure(tmp_path: Path) -> None:
    where = launch(tmp_path / "run")
    with pytest.raises(RunnerFailure, match="cannot execute /no/such/engine"):
        start_group(["/no/such/engine", "run"], cwd=where.run_dir, env={}, stdout=where.stdout,
                    stderr=where.stderr)  # fmt: skip
    not_executable = tmp_path / "plain-file"
    not_executable.write_text("")
    with pytest.raises(RunnerFailure, match="Permission denied"):
        start_group([str(not_executable)], cwd=where.run_dir, env={}, stdout=where.stdout,
                    stderr=where.stderr)  # fmt: skip
    # A run directory that vanished is no fault of the runner's program: a plain OSError.
    with pytest.raises(OSError) as raised:
        start_group(["/bin/sh", "-c", "true"], cwd=tmp_path / "gone", env={},
                    stdout=where.stdout, stderr=where.stderr)  # fmt: skip
    assert not isinstance(raised.value, RunnerFailure)


def test_a_container_engine_that_is_gone_fails_the_runner_at_start(tmp_path: Path) -> None:
    runner = ContainerRunner("boxed", engine="podman", image="img", executable=engine(tmp_path))
    os.unlink(runner.executable)  # it was there when the definitions were read
    with pytest.raises(RunnerFailure, match="cannot execute"):
        runner.start(launch(tmp_path / "run"))


def test_the_engines_own_error_status_is_the_runners_failure(tmp_path: Path) -> None:
    runner = ContainerRunner("boxed", engine="podman", image="img", executable=engine(tmp_path))
    handle = runner.start(launch(tmp_path / "run"))
    assert handle.wait(30) == 125
    assert handle.engine_error(125) == (
        f"{runner.executable} exited 125 (its own error, not the command's)"
    )
    assert handle.engine_error(3) is None and handle.engine_error(127) is None
    # Apptainer has no status of its own: 125 is the command's there.
    apptainer = ContainerRunner(
        "sif", engine="apptainer", image="x.sif", executable=engine(tmp_path)
    )
    other = apptainer.start(launch(tmp_path / "run2"))
    assert other.wait(30) == 125 and other.engine_error(125) is None


def test_a_command_that_is_not_found_is_the_commands_failure(tmp_path: Path) -> None:
    handle = SubprocessRunner().start(launch(tmp_path / "run", "no-such-command-here"))
    assert handle.wait(30) == 127
    assert handle.engine_error(127) is None


def test_a_runner_that_fails_in_a_row_is_no_longer_offered(tmp_path: Path) -> None:
    boxed = ContainerRunner("boxed", engine="podman", image="img", executable=engine(tmp_path))
    runners = Runners(
        [Entry("subprocess", "subprocess", SubprocessRunner(), "built in"),
         Entry("boxed", "container", boxed, "boxed.toml")]
    )  # fmt: skip
    for _ in range(BROKEN_AFTER - 1):
        assert not runners.failed("boxed", "image not known")
    runners.worked("boxed")  # a start that worked: the count starts over
    for _ in range(BROKEN_AFTER - 1):
        assert not runners.failed("boxed", "image not known")
    assert runners.offered() == ["boxed", "subprocess"] and runners.get("boxed") is boxed
    assert runners.failed("boxed", "image not known")  # this one breaks it
    assert not runners.failed("boxed", "image not known")  # said once
    assert runners.offered() == ["subprocess"] and runners.get("boxed") is None
    why = f"{BROKEN_AFTER} starts in a row failed; the last: image not known"
    assert runners.broken() == {"boxed": why} and runners.problem("boxed") == why
    assert runners.problem("subprocess") is None and runners.problem("unknown") is None
