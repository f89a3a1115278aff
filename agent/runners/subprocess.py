"""The default runner: the command runs under `/bin/sh -c` on the agent's own node."""

from __future__ import annotations

import subprocess
from pathlib import Path

from farmhand.agent.runners import RunningProcess

__all__ = ["SubprocessRunner"]


class SubprocessRunner:
    """Runs each command as `sh -c COMMAND` in a new session, hence its own process group."""

    name = "subprocess"

    def start(
        self, command: str, *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path
    ) -> RunningProcess:
        """Start `command`; its output is appended to `stdout` and `stderr`, stdin is empty."""
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            popen = subprocess.Popen(
                command,
                shell=True,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return RunningProcess(popen)
