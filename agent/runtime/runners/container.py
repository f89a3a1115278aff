"""The container runner: a record's command runs inside an image, through the site's engine.

Every engine gets the same contract: the run directory is bind-mounted at its own path and
is the working directory (so `FARMHAND_RUN_DIR` holds inside and outside), the run's
variables (FARMHAND_*, OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES, the record's `env`, the
definition's `env`) reach the command, and the script is `/bin/sh -c` with the definition's
`setup` lines first. How each engine is told so is one row of `ENGINES`.

Podman, Docker and podman-hpc run the container under a daemon or `conmon`, outside the
agent's process group: each run's container gets a unique `--name`, and `terminate` stops
and removes it by that name, so a cancelled run leaves no container behind. Their variables
travel in an `--env-file` (mode 0600, outside the run directory, deleted when the run ends):
values stay out of `ps`, which every user of a shared node can read, and the engine itself is
started with the agent's own environment, so a record's `HOME` or `PATH` cannot misdirect it.
Apptainer, Singularity and Shifter run the container as the agent's own child processes, so
the process group is all there is to stop; they pass the environment through (Apptainer via
`APPTAINERENV_NAME`, which survives `--cleanenv`).

Podman, Docker and podman-hpc exit 125 when the engine itself fails (an image it cannot
find, a broken runtime): `ContainerProcess.engine_error` calls that the runner's failure,
not the command's (a command that exits 125 by itself looks the same). Apptainer,
Singularity and Shifter have no status of their own that tells their errors from the
command's, so with them only an engine program that cannot be executed is the runner's.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from farmhand.runtime.runners import Launch, RunningProcess, compose_script, start_group

__all__ = ["ENGINES", "ContainerProcess", "ContainerRunner", "Engine"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Seconds an engine's `stop` or `rm` may take beyond the grace before we stop waiting.
ENGINE_CALL_SLACK = 30.0


@dataclass(frozen=True)
class Command:
    """What starting one run executes: the engine's argv and its process environment."""

    argv: list[str]
    env: dict[str, str]
    env_file: str | None = None  # content of the --env-file, if the engine takes one


# One builder per engine family: (runner, launch, image, script, env file path) → Command.
Builder = Callable[["ContainerRunner", Launch, str, str, str], Command]


def _oci(
    runner: ContainerRunner, launch: Launch, image: str, script: str, env_file: str
) -> Command:
    run_dir = str(launch.run_dir)
    argv = [runner.executable, "run", "--rm", "--name", launch.name]
    agent = launch.run_env.get("FARMHAND_AGENT_NAME")
    if agent:  # lets an operator find (and clean up) the containers of one agent
        argv += ["--label", f"farmhand.agent={agent}"]
    if runner.init:  # an init as PID 1 forwards SIGTERM to the command and reaps zombies
        argv.append("--init")
    if runner.engine.user:  # files in the run directory belong to the agent's user
        argv += ["--user", f"{os.getuid()}:{os.getgid()}"]
    if runner.network is not None:
        argv += ["--network", runner.network]
    argv += ["-v", f"{run_dir}:{run_dir}", "-w", run_dir]
    for bind in runner.binds:
        argv += ["-v", bind]
    argv += ["--env-file", env_file, *runner.options, image, runner.shell, "-c", script]
    lines = [f"{name}={value}" for name, value in runner.run_env(launch).items()]
    return Command(argv, dict(launch.base_env), "".join(line + "\n" for line in lines))


def _apptainer(
    runner: ContainerRunner, launch: Launch, image: str, script: str, env_file: str
) -> Command:
    run_dir = str(launch.run_dir)
    argv = [runner.executable, "exec", "--pwd", run_dir, "--bind", f"{run_dir}:{run_dir}"]
    for bind in runner.binds:
        argv += ["--bind", bind]
    argv += [*runner.options, image, runner.shell, "-c", script]
    prefix = runner.engine.env_prefix
    env = {**launch.base_env, **{prefix + k: v for k, v in runner.run_env(launch).items()}}
    return Command(argv, env)


def _shifter(
    runner: ContainerRunner, launch: Launch, image: str, script: str, env_file: str
) -> Command:
    run_dir = str(launch.run_dir)
    argv = [
        runner.executable,
        f"--image={image}",
        f"--workdir={run_dir}",
        f"--volume={run_dir}:{run_dir}",
    ]
    argv += [f"--volume={bind}" for bind in runner.binds]
    argv += [*runner.options, "--", runner.shell, "-c", script]
    return Command(argv, {**launch.base_env, **runner.run_env(launch)})


@dataclass(frozen=True)
class Engine:
    """How farmhand drives one container engine."""

    name: str
    build: Builder
    named: bool = False  # containers outlive our process group: stop and remove by name
    user: bool = False  # needs --user so files in the run directory are the agent's
    env_prefix: str = ""  # Apptainer-style variables passed as PREFIX + NAME
    networks: bool = False  # takes --network
    error_exit: int | None = None  # the status the engine exits with when it fails itself


ENGINES: dict[str, Engine] = {
    "podman": Engine("podman", _oci, named=True, networks=True, error_exit=125),
    "podman-hpc": Engine("podman-hpc", _oci, named=True, networks=True, error_exit=125),
    "docker": Engine("docker", _oci, named=True, user=True, networks=True, error_exit=125),
    "apptainer": Engine("apptainer", _apptainer, env_prefix="APPTAINERENV_"),
    "singularity": Engine("singularity", _apptainer, env_prefix="SINGULARITYENV_"),
    "shifter": Engine("shifter", _shifter),
}


class ContainerRunner:
    """Runs each command inside `image` (or the record's `run_args.image`) with `engine`."""

    kind = "container"

    def __init__(
        self,
        name: str,
        *,
        engine: str,
        image: str | None = None,
        setup: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        binds: Sequence[str] = (),
        options: Sequence[str] = (),
        network: str | None = None,
        init: bool = True,
        executable: str | None = None,
        shell: str = "/bin/sh",
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.name = name
        self.engine = ENGINES[engine]
        self.image = image
        self.setup = tuple(setup)
        self.env = dict(env or {})
        self.binds = tuple(binds)
        self.options = tuple(options)
        self.network = network
        self.init = init
        self.executable = executable or engine
        self.shell = shell

    def available(self) -> str | None:
        """Why this runner cannot run here (its engine is not installed), or None."""
        if shutil.which(self.executable) is None:
            return f"{self.executable} not found on PATH"
        return None

    def image_for(self, launch: Launch) -> str:
        """The record's `run_args.image`, else the definition's image."""
        image = launch.run_args.get("image", self.image)
        if not isinstance(image, str) or not image.strip():
            raise ValueError(
                f"runner {self.name!r} has no image: set `image` in its definition or "
                f"run_args.image (got {image!r})"
            )
        return image

    def run_env(self, launch: Launch) -> dict[str, str]:
        """The variables passed into the container: the definition's, then the run's."""
        env = {**self.env, **launch.run_env}
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment variable {name!r} cannot be passed into a container")
            if "\n" in value or "\0" in value:
                raise ValueError(
                    f"environment variable {name!r} holds a newline, which container engines "
                    "cannot pass"
                )
        return env

    def command(self, launch: Launch, env_file: str = "ENV_FILE") -> Command:
        """What `start` executes for `launch`: the exact argv and environment."""
        script = compose_script(self.setup, launch.command)
        return self.engine.build(self, launch, self.image_for(launch), script, env_file)

    def start(self, launch: Launch) -> RunningProcess:
        """Start the container; its output is appended to the run's two files."""
        env_path = None
        if self.engine.named:
            fd, env_path = tempfile.mkstemp(prefix="farmhand-env-", suffix=".env")
            os.close(fd)
        try:
            command = self.command(launch, env_path or "")
            if env_path is not None:
                Path(env_path).write_text(command.env_file or "")
            popen = start_group(
                command.argv,
                cwd=launch.run_dir,
                env=command.env,
                stdout=launch.stdout,
                stderr=launch.stderr,
                umask=launch.umask,
            )
        except BaseException:
            if env_path is not None:
                Path(env_path).unlink(missing_ok=True)
            raise
        stop = [self.executable] if self.engine.named else None
        return ContainerProcess(
            popen,
            engine=stop,
            name=launch.name,
            env_file=env_path,
            error_exit=self.engine.error_exit,
            program=self.executable,
        )


class ContainerProcess(RunningProcess):
    """A containerised run: terminating it also stops and removes its named container."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        engine: list[str] | None,
        name: str,
        env_file: str | None,
        error_exit: int | None = None,
        program: str = "the container engine",
    ):
        super().__init__(popen)
        self.engine = engine
        self.name = name
        self.env_file = env_file
        self.error_exit = error_exit
        self.program = program

    def engine_error(self, code: int) -> str | None:
        """`podman exited 125 (its own error, not the command's)` for the engine's error
        status, else None."""
        if self.error_exit is None or code != self.error_exit:
            return None
        return f"{self.program} exited {code} (its own error, not the command's)"

    def poll(self) -> int | None:
        """The exit status if the engine's process has exited, else None."""
        return self._ended(super().poll())

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` seconds for the engine's process; its exit status or None."""
        return self._ended(super().wait(timeout))

    def terminate(self, grace: float) -> int:
        """Stop the container (the engine's SIGTERM, `grace`, SIGKILL), end our process
        group, then remove the container: one created while we stopped it is caught too."""
        if self.engine is not None:
            self._engine_call("stop", "-t", str(math.ceil(grace)), timeout=grace)
        code = super().terminate(grace)
        if self.engine is not None:
            self._engine_call("rm", "-f", timeout=grace)
        self._ended(code)
        return code

    def _ended(self, code: int | None) -> int | None:
        if code is not None and self.env_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.env_file)
            self.env_file = None
        return code

    def _engine_call(self, *args: str, timeout: float) -> None:
        assert self.engine is not None
        # "no such container" is the usual answer (it was never created, or --rm removed
        # it): there is nothing to report either way.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [*self.engine, *args, self.name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout + ENGINE_CALL_SLACK,
                check=False,
            )
