"""Where the bearer token comes from, and how an agent keeps it away from its runs.

A token is taken from `--token`, else `--token-file PATH`, else `$FARMHAND_TOKEN`, else
`$FARMHAND_TOKEN_FILE`. A token file holds the token alone (surrounding whitespace is
ignored); like ssh with a private key, a regular file that its group or others may read or
write is refused, since its mode is the token's only protection.

A run's command is a child of its agent and runs as the same user, so it can read the
agent's `/proc/PID/environ` and `/proc/PID/cmdline`. The kernel keeps the environment a
process was started with there: `os.environ.pop` changes nothing the command sees. So an
agent started with a token in its environment (`FARMHAND_TOKEN`, `FARMHAND_ADMIN_TOKEN`) or on
its command line (`--token`) starts itself again at once (`hide_and_reexec`), without them,
and the token travels through an inherited pipe whose descriptor the new process reads and
closes (`--secrets-fd N`). With `--token-file` nothing of the kind is needed.

Stdlib only: this runs before anything else is imported, to keep the agent's start fast.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "SECRET_ENV",
    "TOKEN_FILE_ENV",
    "TokenError",
    "hide_and_reexec",
    "read_token_file",
    "receive",
    "resolve_token",
]

#: Variables that hold secrets: never passed to a run, dropped by the agent's re-exec.
SECRET_ENV = ("FARMHAND_TOKEN", "FARMHAND_ADMIN_TOKEN")
TOKEN_FILE_ENV = "FARMHAND_TOKEN_FILE"
#: The hidden option that tells the re-executed agent where its secrets wait.
SECRETS_FD_OPTION = "--secrets-fd"
_MAX_SECRETS = 60_000  # below a pipe's buffer (64 KiB), so writing it never blocks


class TokenError(Exception):
    """A token that cannot be used: the message names the file and the fix."""


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in file `path`; TokenError if it is missing, empty, not one word, or (a
    regular file) open to its group or others."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if stat.S_ISREG(mode) and mode & 0o077:
                raise TokenError(
                    f"token file {path} is open to others (mode {stat.S_IMODE(mode):04o}); "
                    f"make it private: chmod 600 {path}"
                )
            raw = handle.read(_MAX_SECRETS + 1)
    except FileNotFoundError:
        raise TokenError(f"token file {path} does not exist") from None
    except IsADirectoryError:
        raise TokenError(f"token file {path} is a directory") from None
    except PermissionError:
        raise TokenError(f"token file {path} cannot be read (permission denied)") from None
    token = raw.decode("utf-8", errors="replace").strip()
    if not token:
        raise TokenError(f"token file {path} is empty; put the token in it")
    if len(raw) > _MAX_SECRETS or any(c.isspace() for c in token):
        raise TokenError(f"token file {path} holds more than one token; keep the token alone")
    return token


def resolve_token(
    token: str | None, token_file: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The token from the flags, else from the environment (see the module docstring);
    None when none is given anywhere."""
    env = os.environ if environ is None else environ
    if token and token_file:
        raise TokenError("give --token or --token-file, not both")
    if token:
        return token
    if token_file:
        return read_token_file(token_file)
    if env.get("FARMHAND_TOKEN"):
        return env["FARMHAND_TOKEN"]
    if env.get(TOKEN_FILE_ENV):
        return read_token_file(env[TOKEN_FILE_ENV])
    return None


def hide_and_reexec(argv: Sequence[str]) -> None:
    """If this `farmhand agent` process holds a secret in its environment or a `--token` on
    its command line, start it again without them (this call then never returns). `argv`
    is the command's arguments after the program name."""
    if not hasattr(os, "execve") or not sys.executable or SECRETS_FD_OPTION in argv:
        return
    rest, flag_token = _without_token_flag(argv)
    moved = {name: os.environ[name] for name in SECRET_ENV if name in os.environ}
    if flag_token is None and not moved:
        return
    payload = json.dumps({"token": flag_token, "env": moved}).encode()
    if len(payload) > _MAX_SECRETS:
        return  # no pipe holds it; the agent still keeps it from its runs' environment
    read_end, write_end = os.pipe()
    os.write(write_end, payload)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    command = [*rest[:1], SECRETS_FD_OPTION, str(read_end), *rest[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *_launcher(), *command], env)
    except OSError as exc:  # then at least the runs' environment stays clean (PRIVATE_ENV)
        os.close(read_end)
        print(f"farmhand: warning: cannot restart without the token: {exc}", file=sys.stderr)


def _launcher() -> list[str]:
    """How this process was started, so that it starts again the same way (and with the
    same `sys.path`): the console script, else `-m farmhand`."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) != "__main__.py" and os.path.isfile(script):
        return [script]
    return ["-m", "farmhand"]


def receive(fd: int) -> tuple[str | None, dict[str, str]]:
    """What `hide_and_reexec` sent through descriptor `fd`: the `--token` value and the
    secret variables; the descriptor is closed."""
    try:
        with os.fdopen(fd, "rb") as pipe:
            sent = json.loads(pipe.read(_MAX_SECRETS + 1) or b"{}")
    except (OSError, ValueError) as exc:
        raise TokenError(f"cannot read the token handed over on descriptor {fd}: {exc}") from exc
    return sent.get("token"), {str(k): str(v) for k, v in (sent.get("env") or {}).items()}


def _without_token_flag(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """`argv` without `--token T` / `--token=T` (before a `--`), and the last T."""
    rest: list[str] = []
    token = None
    args = iter(argv)
    for arg in args:
        if arg == "--":
            rest += [arg, *args]
            break
        if arg == "--token":
            token = next(args, None)
            if token is None:
                rest.append(arg)  # argparse says what is missing
        elif arg.startswith("--token="):
            token = arg.partition("=")[2]
        else:
            rest.append(arg)
    return rest, token
