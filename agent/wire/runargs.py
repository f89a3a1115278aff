"""The run_args farmhand itself reads, checked where they enter: a record's `run_args`, a
campaign's `defaults` and a retry's temporary ones.

A value the agent would refuse on the node (`timeout = "soon"`, `max_attempts = "two"`,
`archive = "yes"`) is refused at submission instead, naming the run_arg, so a bad record
never spends its attempts failing. Durations take one set of forms everywhere
(`durations.parse_duration`). Names farmhand does not read are the user's own and pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator

from farmhand.wire.base import check_document
from farmhand.wire.durations import run_arg_seconds

__all__ = ["CHECKS", "RunArgs", "check_run_args"]


def _duration(name: str, *, positive: bool) -> Callable[[Mapping[str, Any]], None]:
    def check(run_args: Mapping[str, Any]) -> None:
        run_arg_seconds(run_args, name, positive=positive)

    return check


def _whole(name: str, low: int) -> Callable[[Mapping[str, Any]], None]:
    def check(run_args: Mapping[str, Any]) -> None:
        value = run_args[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"run_args.{name} must be a whole number >= {low}, got {value!r}")

    return check


def _cores(run_args: Mapping[str, Any]) -> None:
    value = run_args["cores"]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"run_args.cores must be a positive number, got {value!r}")


def _kind(name: str, kinds: tuple[type, ...], what: str) -> Callable[[Mapping[str, Any]], None]:
    def check(run_args: Mapping[str, Any]) -> None:
        value = run_args[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"run_args.{name} must be {what}, got {value!r}")
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"run_args.{name} must be {what}, got {value!r}")

    return check


def _patterns(run_args: Mapping[str, Any]) -> None:
    value = run_args["archive_exclude"]
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"run_args.archive_exclude must be a list of patterns, got {value!r}")


#: run_arg -> its check (called only when the run_arg is present and not null).
CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "timeout": _duration("timeout", positive=True),
    "walltime": _duration("walltime", positive=True),
    "checkpoint_interval": _duration("checkpoint_interval", positive=False),
    "max_attempts": _whole("max_attempts", 1),
    "gpus": _whole("gpus", 0),
    "cores": _cores,
    "runner": _kind("runner", (str,), "a runner name"),
    "image": _kind("image", (str,), "an image name"),
    "archive": _kind("archive", (bool,), "true or false"),
    "unpack_parents": _kind("unpack_parents", (bool,), "true or false"),
    "env": _kind("env", (dict,), "a table of NAME = value"),
    "archive_exclude": _patterns,
}


def check_run_args(run_args: dict[str, Any]) -> dict[str, Any]:
    """`run_args` unchanged, or ValueError naming the first run_arg farmhand reads whose value
    it would refuse on the node (memory is checked by the server's resource matching)."""
    if not run_args:  # most records: a 100,000-record submission checks each one
        return run_args
    for name, check in CHECKS.items():
        if run_args.get(name) is not None:
            check(run_args)
    return run_args


#: A run_args table: a JSON document whose run_args farmhand reads are checked.
RunArgs = Annotated[dict[str, Any], AfterValidator(check_document), AfterValidator(check_run_args)]
