"""What the claim matches: a record's runner, resources and walltime, from its run_args.

They are read once, at submission, from the effective run_args (campaign defaults, then the
record's own), checked, and stored as plain columns the claim statement can compare.
"""

from __future__ import annotations

import re
from typing import Any

from farmhand import wire
from farmhand.server.errors import Invalid

DEFAULT_RUNNER = "subprocess"
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MB_PER_UNIT = {"": 1, "B": 1 / 2**20, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}


def columns(run_args: dict[str, Any], where: str) -> dict[str, Any]:
    """`runner`, `cores`, `gpus`, `memory_mb` and `walltime` for the record table."""
    runner = run_args.get("runner", DEFAULT_RUNNER)
    if not isinstance(runner, str) or not runner:
        raise Invalid(f"{where}: run_args.runner must be a runner name, got {runner!r}")
    return {
        "runner": runner,
        "cores": _float(_number(run_args, "cores", where, whole=False)),
        "gpus": _number(run_args, "gpus", where, whole=True),
        "memory_mb": memory_mb(run_args.get("memory"), where),
        "walltime": seconds(run_args.get("walltime"), where),
    }


def max_attempts(run_args: dict[str, Any], default: int, where: str) -> int:
    """run_args.max_attempts (a whole number >= 1) or `default`."""
    value = run_args.get("max_attempts", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Invalid(f"{where}: run_args.max_attempts must be a whole number >= 1, got {value!r}")
    return value


#: Seconds a failed attempt's record waits before its next attempt, unless run_args say
#: otherwise (`retry_delay`); the wait doubles with each attempt spent, up to `MAX_RETRY_DELAY`
#: (or `retry_delay` itself, when that is longer).
RETRY_DELAY = 2.0
MAX_RETRY_DELAY = 300.0


def retry_delay(run_args: dict[str, Any], where: str) -> float:
    """run_args `retry_delay` in seconds (a duration, as `walltime` takes; 0: no wait), or
    `RETRY_DELAY`."""
    value = run_args.get("retry_delay")
    if value is None:
        return RETRY_DELAY
    try:
        return wire.duration_seconds(value, "run_args.retry_delay")
    except ValueError:
        raise Invalid(
            f"{where}: run_args.retry_delay must be a duration ({wire.DURATION_FORMS}), "
            f"got {value!r}"
        ) from None


def retry_wait(run_args: dict[str, Any], attempts: int) -> float:
    """Seconds before the next attempt of a record whose attempt number `attempts` failed:
    its `retry_delay`, doubled for each attempt after the first, capped (an invalid
    `retry_delay` from a retry's temporary run_args counts as the default)."""
    try:
        first = retry_delay(run_args, "record")
    except Invalid:
        first = RETRY_DELAY
    grown = first * 2 ** min(max(attempts - 1, 0), 30)
    return min(grown, max(MAX_RETRY_DELAY, first))


def memory_mb(value: Any, where: str) -> int | None:
    """Memory in MiB from a number of MiB or a string like `512M`, `4G`, `1.5GiB`."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    match = _MEMORY.match(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(f"{where}: run_args.memory must be MiB or a size like '4G', got {value!r}")
    unit = (match.group(2) or "").upper()[:1]
    return int(float(match.group(1)) * _MB_PER_UNIT[unit])


def seconds(value: Any, where: str) -> float | None:
    """run_args `walltime` in seconds, read as the agent reads it (`wire.walltime_seconds`:
    seconds, `30m`, `2h`, `1d`, `MM:SS`, `HH:MM:SS`, `D-HH:MM:SS`); it must be > 0."""
    try:
        parsed = wire.walltime_seconds({"walltime": value})
    except (TypeError, ValueError):
        parsed = 0.0
    if parsed is not None and parsed <= 0:
        raise Invalid(
            f"{where}: run_args.walltime must be a positive duration "
            f"({wire.DURATION_FORMS}), got {value!r}"
        )
    return parsed


def _float(value: Any) -> float | None:
    """A FLOAT column's value as a float: PostgreSQL's array insert refuses int and float
    mixed in one column."""
    return None if value is None else float(value)


def _number(run_args: dict[str, Any], name: str, where: str, *, whole: bool) -> Any:
    value = run_args.get(name)
    if value is None:
        return None
    kinds = (int,) if whole else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or value < 0:
        kind = "a whole number" if whole else "a number"
        raise Invalid(f"{where}: run_args.{name} must be {kind} >= 0, got {value!r}")
    return value
