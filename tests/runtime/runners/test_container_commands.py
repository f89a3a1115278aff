"""The exact command lines each container engine gets (most of them cannot run here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farmhand.runtime.runners import Launch
from farmhand.runtime.runners.container import ContainerRunner

RUN_DIR = Path("/scratch/work/runs/1/k/7")
SCRIPT = "{ source /opt/env.sh\n} || exit $?\n./relax --a 4.05"
BASE = {"PATH": "/usr/bin:/bin", "HOME": "/home/u"}
RUN_ENV = {"OMP_NUM_THREADS": "4", "FARMHAND_AGENT_NAME": "node1-42", "GREETING": "hi there"}


def launch(**changes: object) -> Launch:
    fields: dict = {
        "command": "./relax --a 4.05",
        "run_dir": RUN_DIR,
        "stdout": RUN_DIR / "stdout.txt",
        "stderr": RUN_DIR / "stderr.txt",
        "base_env": BASE,
        "run_env": RUN_ENV,
        "name": "farmhand-7-0123abcd",
        "run_args": {},
    }
    fields.update(changes)
    return Launch(**fields)


def runner(engine: str, **options: object) -> ContainerRunner:
    settings: dict = {
        "image": "lammps.sif",
        "setup": ["source /opt/env.sh"],
        "binds": ["/sw", "/data:/in:ro"],
        "env": {"OMP_PROC_BIND": "true", "OMP_NUM_THREADS": "1"},
        **options,
    }
    return ContainerRunner("lammps", engine=engine, **settings)


@pytest.mark.parametrize("engine", ["podman", "podman-hpc"])
def test_podman_and_podman_hpc(engine: str) -> None:
    command = runner(engine, network="none", options=["--runtime", "runc"]).command(
        launch(), env_file="/tmp/e.env"
    )
    run_dir = str(RUN_DIR)
    assert command.argv == [
        engine,
        "run",
        "--rm",
        "--name",
        "farmhand-7-0123abcd",
        "--label",
        "farmhand.agent=node1-42",
        "--init",
        "--network",
        "none",
        "-v",
        f"{run_dir}:{run_dir}",
        "-w",
        run_dir,
        "-v",
        "/sw",
        "-v",
        "/data:/in:ro",
        "--env-file",
        "/tmp/e.env",
        "--runtime",
        "runc",
        "lammps.sif",
        "/bin/sh",
        "-c",
        SCRIPT,
    ]
    # The engine runs with the agent's environment; the run's goes into the container, the
    # run's own OMP_NUM_THREADS winning over the definition's.
    assert command.env == BASE
    assert command.env_file == (
        "OMP_PROC_BIND=true\nOMP_NUM_THREADS=4\nFARMHAND_AGENT_NAME=node1-42\nGREETING=hi there\n"
    )


def test_docker_runs_as_the_agents_user_without_init_when_told() -> None:
    command = runner("docker", init=False, executable="/usr/bin/docker", binds=[]).command(
        launch(), env_file="/tmp/e.env"
    )
    run_dir = str(RUN_DIR)
    assert command.argv == [
        "/usr/bin/docker",
        "run",
        "--rm",
        "--name",
        "farmhand-7-0123abcd",
        "--label",
        "farmhand.agent=node1-42",
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "-v",
        f"{run_dir}:{run_dir}",
        "-w",
        run_dir,
        "--env-file",
        "/tmp/e.env",
        "lammps.sif",
        "/bin/sh",
        "-c",
        SCRIPT,
    ]


@pytest.mark.parametrize(
    ("engine", "prefix"), [("apptainer", "APPTAINER"), ("singularity", "SINGULARITY")]
)
def test_apptainer_and_singularity(engine: str, prefix: str) -> None:
    command = runner(engine, options=["--nv", "--cleanenv"]).command(launch())
    run_dir = str(RUN_DIR)
    assert command.argv == [
        engine,
        "exec",
        "--pwd",
        run_dir,
        "--bind",
        f"{run_dir}:{run_dir}",
        "--bind",
        "/sw",
        "--bind",
        "/data:/in:ro",
        "--nv",
        "--cleanenv",
        "lammps.sif",
        "/bin/sh",
        "-c",
        SCRIPT,
    ]
    # APPTAINERENV_X reaches the container even with --cleanenv; the engine itself keeps
    # the agent's environment.
    assert command.env == {
        **BASE,
        f"{prefix}ENV_OMP_PROC_BIND": "true",
        f"{prefix}ENV_OMP_NUM_THREADS": "4",
        f"{prefix}ENV_FARMHAND_AGENT_NAME": "node1-42",
        f"{prefix}ENV_GREETING": "hi there",
    }
    assert command.env_file is None


def test_shifter() -> None:
    command = runner("shifter", image="docker:lammps/lammps:latest").command(launch())
    run_dir = str(RUN_DIR)
    assert command.argv == [
        "shifter",
        "--image=docker:lammps/lammps:latest",
        f"--workdir={run_dir}",
        f"--volume={run_dir}:{run_dir}",
        "--volume=/sw",
        "--volume=/data:/in:ro",
        "--",
        "/bin/sh",
        "-c",
        SCRIPT,
    ]
    assert command.env == {**BASE, "OMP_PROC_BIND": "true", **RUN_ENV}


def test_a_record_may_override_the_image() -> None:
    command = runner("apptainer").command(launch(run_args={"image": "/sw/other.sif"}))
    assert "/sw/other.sif" in command.argv and "lammps.sif" not in command.argv


@pytest.mark.parametrize("image", [None, "", 3])
def test_no_image_is_a_clear_error(image: object) -> None:
    with pytest.raises(ValueError, match=r"runner 'lammps' has no image: set `image`"):
        runner("podman", image=None).command(launch(run_args={"image": image}))


def test_without_setup_the_script_is_the_command() -> None:
    command = runner("shifter", setup=[]).command(launch())
    assert command.argv[-3:] == ["/bin/sh", "-c", "./relax --a 4.05"]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"BAD NAME": "x"}, "'BAD NAME' cannot be passed into a container"),
        ({"MULTI": "a\nb"}, "'MULTI' holds a newline"),
    ],
)
def test_variables_a_container_cannot_take(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        runner("podman").command(launch(run_env=env))


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="engine 'lxc' is not one of podman"):
        ContainerRunner("x", engine="lxc")
