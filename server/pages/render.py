"""Rendering: one Jinja2 environment, display filters, and the pages' response headers.

A page answers a live refresh (header `X-Farmhand-Live`) with only its `live` block, which
the page's script swaps in place: no full reload, and no second template to keep in step.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from farmhand.server.views.status import UNITS

TEMPLATES = Path(__file__).parent / "templates"
NOTHING = "\u2013"  # an en dash stands for a missing time or rate
LIVE_HEADER = "X-Farmhand-Live"
#: Scripts, styles and fetches only from this server: no CDN, no inline code.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def ago(seconds: float | None) -> str:
    """`42 s`, `5 min`, `3 h`, `2 d`."""
    if seconds is None:
        return NOTHING
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def when(moment: datetime | None) -> str:
    """A UTC time, to the second."""
    if moment is None:
        return NOTHING
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def rate(per_second: float | None, unit: str | None = None) -> str:
    """Records per `unit` (`s`, `min`, `h`: a page shows all its rates in one), or per
    second or minute, whichever reads better, without one. Small numbers keep two
    significant digits, so a slow row next to a fast one does not read `0.0`."""
    if per_second is None:
        return NOTHING
    if unit is None:
        unit = "s" if per_second >= 1 else "min"
    value = per_second * UNITS[unit]
    if value >= 100:
        shown = f"{value:,.0f}"
    elif value >= 1 or value == 0:
        shown = f"{value:.1f}"
    else:
        shown = f"{value:.2g}"
    return f"{shown}/{unit}"


def duration(seconds: float | None) -> str:
    """A time span to the minute, in at most two units: `2h 10m`, `3d 4h`, `45s`."""
    if seconds is None:
        return NOTHING
    seconds = round(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def last_lines(text: str | None, lines: int = 8) -> str:
    """The last `lines` lines of a log tail."""
    if not text:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def offers(agent: Any) -> str:
    """An agent's resources and runners: `8 cores · 2 GPUs · 16 GiB · subprocess, podman`."""
    parts = []
    amounts = agent.resources
    if amounts is not None:
        if amounts.cores is not None:
            parts.append(f"{amounts.cores:g} cores")
        if amounts.gpus is not None:
            parts.append(f"{amounts.gpus} GPU{'' if amounts.gpus == 1 else 's'}")
        if amounts.memory_mb is not None:
            parts.append(f"{round(amounts.memory_mb / 1024, 1):g} GiB")
    parts.append("any runner" if agent.runners is None else ", ".join(agent.runners) or "no runner")
    return " · ".join(parts)


def cell(value: Any) -> str:
    """A param or result value in a table cell: text as is, lists and objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, (bool, list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def pretty(value: Any) -> str:
    """JSON, indented."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@cache
def environment() -> Environment:
    """The pages' Jinja2 environment (built on first use, not at import)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ago=ago,
        when=when,
        rate=rate,
        duration=duration,
        cell=cell,
        last_lines=last_lines,
        pretty=pretty,
        offers=offers,
    )
    return env


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    viewer: Any = None,
) -> HTMLResponse:
    """The page `name`, or only its `live` block when the page's script asks for it."""
    app = request.app
    template = environment().get_template(name)
    full = {
        "request": request,
        "base": request.scope.get("root_path", ""),
        "version": app.version,
        "refresh": app.state.settings.page_refresh,
        "viewer": viewer,
        "now": datetime.now(timezone.utc),
        **context,
    }
    if request.headers.get(LIVE_HEADER) and "live" in template.blocks:
        html = "".join(template.blocks["live"](template.new_context(full)))
    else:
        html = template.render(full)
    headers = {
        "Content-Security-Policy": CSP,
        "Cache-Control": "no-store",
        "Vary": LIVE_HEADER,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return HTMLResponse(html, status_code=status_code, headers=headers)
