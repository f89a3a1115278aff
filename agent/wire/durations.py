"""Durations as people write them in run_args and on command lines.

One parser for both sides of the wire: what `farmhand agent --walltime` accepts, a record's
`run_args.walltime` accepts too, and the server reads it the same way the agent does.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
#: The forms, for error messages.
DURATION_FORMS = "seconds, 30m, 2h, 1d, MM:SS, HH:MM:SS or D-HH:MM:SS"


def parse_duration(text: str) -> float:
    """Seconds in `90` / `90s`, `30m`, `2h`, `1d`, `MM:SS`, `HH:MM:SS` or `D-HH:MM:SS`.

    A bare number is seconds (like every duration farmhand takes), not Slurm's minutes.
    ValueError for anything else, or a negative or non-finite value.
    """
    value = str(text).strip()
    unit = value[-1:].lower()
    try:
        if unit in _UNITS:
            seconds = float(value[:-1]) * _UNITS[unit]
        elif ":" in value or "-" in value:
            seconds = clock_seconds(value)
        else:
            seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {text!r} (use {DURATION_FORMS})")
    return float(seconds)


def walltime_seconds(run_args: Mapping[str, Any]) -> float | None:
    """A record's run_args `walltime` in seconds (a number of seconds or a string
    `parse_duration` reads); None when it has none. ValueError for one that is not a
    duration. Server and agent both read it here."""
    return run_arg_seconds(run_args, "walltime")


def timeout_seconds(run_args: Mapping[str, Any]) -> float | None:
    """run_args `timeout`: the seconds a run's command may take before it is killed, in the
    forms `walltime` takes; None when there is none. ValueError unless it is > 0."""
    return run_arg_seconds(run_args, "timeout", positive=True)


def run_arg_seconds(
    run_args: Mapping[str, Any], name: str, *, positive: bool = False
) -> float | None:
    """The time-valued run_arg `name` in seconds: a number of seconds or a string
    `parse_duration` reads (`90`, `30m`, `2h`, `1d`, `HH:MM:SS`, …); None when absent.
    ValueError naming it for anything else, a negative value or (`positive`) zero."""
    value = run_args.get(name)
    if value is None:
        return None
    seconds = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):  # said below, with the run_arg's name
            seconds = parse_duration(value)
    if math.isfinite(seconds) and (seconds > 0 or (seconds == 0 and not positive)):
        return seconds
    kind = "a positive duration" if positive else "a duration"
    raise ValueError(f"run_args.{name} must be {kind} ({DURATION_FORMS}), got {value!r}")


def duration_seconds(value: Any, what: str = "run_args") -> float:
    """A duration in run_args — a number of seconds, or a string `parse_duration` reads —
    in seconds. ValueError for anything else (naming `what` for booleans and numbers that
    are negative or not finite)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration, not {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} must be a duration, not {value!r}")
        return float(value)
    return parse_duration(str(value))


def clock_seconds(value: str) -> float:
    """Slurm's forms: `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`."""
    match = _CLOCK.match(value)
    if match is None:
        raise ValueError(value)
    days, *parts = match.groups()
    numbers = [int(p) for p in parts if p is not None]
    if days is not None:
        hours, minutes, seconds = [*numbers, 0, 0][:3]  # counted from the hours
    elif len(numbers) == 2:
        hours, (minutes, seconds) = 0, numbers
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    else:
        raise ValueError(value)
    return (int(days or 0) * 24 + hours) * 3600 + minutes * 60 + seconds
