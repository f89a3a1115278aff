"""How the CLI prints things: aligned tables, short cells, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import Enum
from typing import Any


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
