"""What the agent reads from a lease's effective run_args (campaign defaults, then the
record's own, then a retry's temporary ones)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["timeout"]


def timeout(run_args: dict[str, Any]) -> float | None:
    """`run_args.timeout`: seconds a run's command may take before it is killed (None: no
    limit). ValueError names a value that is not a positive number."""
    value = run_args.get("timeout")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"run_args.timeout must be a number of seconds > 0, got {value!r}")
    return float(value)
