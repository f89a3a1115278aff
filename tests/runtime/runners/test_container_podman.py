"""The container runner with real podman and the busybox test image."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand.runtime.runners import Launch
from farmhand.runtime.runners.container import ContainerProcess, ContainerRunner
from tests.support.containers import IMAGE, PODMAN_OPTIONS, containers, require_podman

if TYPE_CHECKING:
    from tests.support.agent_side import Probe

_names = itertools.count()

Start = Callable[..., tuple[ContainerProcess, Launch]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """`start(command, setup=…)` → a running container and its launch; each is removed at
    teardown, so a failing test leaves nothing behind either."""
    require_podman()
    names: list[str] = []

    def run(command: str, **definition: object) -> tuple[ContainerProcess, Launch]:
        name = f"farmhand-test-{os.getpid()}-{next(_names)}"
        names.append(name)
        run_dir = tmp_path / name
        run_dir.mkdir()
        launch = Launch(
            command=command,
            run_dir=run_dir,
            stdout=run_dir / "stdout.txt",
            stderr=run_dir / "stderr.txt",
            base_env={**os.environ, "FROM_AGENT": "agent"},
            run_env={"OMP_NUM_THREADS": "3", "GREETING": "hello  there", "FARMHAND_RUN_ID": "7"},
            name=name,
        )
        runner = ContainerRunner(
            "busybox",
            engine="podman",
            image=IMAGE,
            network="none",
            options=PODMAN_OPTIONS,
            **definition,
        )
        handle = runner.start(launch)
        assert isinstance(handle, ContainerProcess)
        return handle, launch

    yield run
    for name in names:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


def test_output_results_and_environment_land_in_the_run_directory(start: Start) -> None:
    command = (
        'echo "out $GREETING"; echo err >&2; '
        """printf '{"threads": "%s", "run": "%s", "agent": "%s", "pwd": "%s"}' """
        '"$OMP_NUM_THREADS" "$FARMHAND_RUN_ID" "${FROM_AGENT-unset}" "$(pwd)" > results.json'
    )
    handle, launch = start(command)
    env_file = handle.env_file
    assert env_file is not None and os.stat(env_file).st_mode & 0o077 == 0  # private
    assert handle.wait(120) == 0
    assert (launch.run_dir / "stdout.txt").read_text() == "out hello  there\n"
    assert (launch.run_dir / "stderr.txt").read_text() == "err\n"
    assert (launch.run_dir / "results.json").read_text() == (
        f'{{"threads": "3", "run": "7", "agent": "unset", "pwd": "{launch.run_dir}"}}'
    )
    assert containers(launch.name) == []  # --rm
    assert not os.path.exists(env_file)


def test_a_non_zero_exit_is_the_runs_exit_status(start: Start) -> None:
    handle, launch = start("exit 3")
    assert handle.wait(120) == 3
    assert containers(launch.name) == []


def test_setup_runs_first_inside_the_container(start: Start) -> None:
    handle, launch = start(
        'echo "$STAGE" > command.txt', setup=["STAGE=prepared", "test -x /bin/busybox"]
    )
    assert handle.wait(120) == 0
    assert (launch.run_dir / "command.txt").read_text() == "prepared\n"


def test_terminate_stops_and_removes_the_container(start: Start, probe: Probe) -> None:
    handle, launch = start("echo up > up.txt; sleep 1000")
    probe.wait_until(lambda: (launch.run_dir / "up.txt").exists(), 120, "the container to run")
    assert containers(launch.name) == [launch.name]
    handle.terminate(grace=10)
    assert containers(launch.name) == []
    assert handle.poll() is not None
    assert handle.env_file is None


def test_terminate_escalates_when_the_command_ignores_sigterm(start: Start, probe: Probe) -> None:
    handle, launch = start("trap '' TERM; echo up > up.txt; sleep 1000 & wait")
    probe.wait_until(lambda: (launch.run_dir / "up.txt").exists(), 120, "the container to run")
    handle.terminate(grace=0.5)
    assert containers(launch.name) == []


def test_killing_the_engine_alone_would_orphan_the_container(start: Start, probe: Probe) -> None:
    """Why terminate goes through the engine: SIGKILL of our process group (what a second
    Ctrl-C does at once) leaves podman's container running; terminate then removes it."""
    handle, launch = start("echo up > up.txt; sleep 1000")
    probe.wait_until(lambda: (launch.run_dir / "up.txt").exists(), 120, "the container to run")
    handle.kill()
    assert handle.wait(30) is not None
    assert containers(launch.name) == [launch.name]
    handle.terminate(grace=0)
    assert containers(launch.name) == []
