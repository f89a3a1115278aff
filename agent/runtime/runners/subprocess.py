"""The default runner: the command runs under `/bin/sh -c` on the agent's own node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from farmhand.runtime.runners import (
    Launch,
    RunnerFailure,
    RunningProcess,
    compose_script,
    start_group,
)
from farmhand.runtime.runners.spawn import SPAWNS, spawn_shell

__all__ = ["SHELL", "SubprocessRunner"]

SHELL = "/bin/sh"


class SubprocessRunner:
    """Runs each command as `sh -c SCRIPT` in a new session, hence its own process group
    (started by `spawn.spawn_shell`: the script's first line enters the run directory).

    A definition may add `setup` lines (run first, in the same shell) and `env` (set before
    the record's own variables, which win).
    """

    kind = "subprocess"

    def __init__(
        self,
        name: str = "subprocess",
        *,
        setup: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.setup = tuple(setup)
        self.env = dict(env or {})

    def start(self, launch: Launch) -> RunningProcess:
        """Start the command; its output is appended to the two files, stdin is empty."""
        env = {**launch.base_env, **self.env, **launch.run_env}
        script = compose_script(self.setup, launch.command)
        if not SPAWNS:  # no posix_spawn with setsid here: Popen, as container runners do
            popen = start_group(
                [SHELL, "-c", script],
                cwd=launch.run_dir,
                env=env,
                stdout=launch.stdout,
                stderr=launch.stderr,
                umask=launch.umask,
            )
            return RunningProcess(popen)
        try:
            child = spawn_shell(
                SHELL,
                script,
                cwd=launch.run_dir,
                env=env,
                stdout=launch.stdout,
                stderr=launch.stderr,
                umask=launch.umask,
            )
        except OSError as exc:
            if exc.filename != SHELL:
                raise
            raise RunnerFailure(f"cannot execute {SHELL}: {exc.strerror or exc}") from exc
        return RunningProcess(child)
