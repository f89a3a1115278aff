"""How the CLI prints things: aligned tables, short cells, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import Enum
from typing import Any

from farmhand import wire
from farmhand.runtime.resources.walltime import describe


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with upper-case headers."""
    if not rows:
        return "(none)"
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def cell(value: Any) -> str:
    """One value as a single short line."""
    if value is None:
        return "-"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def dump(models: Any) -> None:
    """Print a model or a list of models as JSON."""
    if isinstance(models, list):
        data = [m.model_dump(mode="json") for m in models]
    else:
        data = models.model_dump(mode="json")
    print(json.dumps(data, indent=2))


def agent_status(status: wire.AgentStatus | None) -> str:
    """An agent's last reported status as one short line for `farmhand ls agents`:
    `paused: disk 93.1% used, limit 90% (/scratch)` or `claiming, disk 41%, 1h 02m left`."""
    if status is None:
        return "-"
    parts = [f"paused: {status.paused}" if status.paused else "claiming"]
    if status.disk_used_percent is not None and not status.paused:
        parts.append(f"disk {status.disk_used_percent:.0f}%")
    if status.walltime_left is not None:
        parts.append(f"{describe(status.walltime_left)} left")
    if status.outbox:
        parts.append(f"{status.outbox} report(s) waiting")
    if status.broken_runners:
        names = ", ".join(repr(name) for name in sorted(status.broken_runners))
        parts.append(f"stopped offering {names} (failed starts)")
    return ", ".join(parts)


def params_text(params: dict[str, Any]) -> str:
    """`T=600 a=4.05 phase=fcc`: a record's params on one line, in name order."""
    return " ".join(f"{name}={wire.param_text(value)}" for name, value in sorted(params.items()))
