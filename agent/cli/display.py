"""`farmhand agent --display`: a live panel of the agent, drawn with rich.

It shows what the old production scripts' curses view showed: the slots, each record in hand
with its elapsed time, done and failed counts, the prefetch queue, whether the server answers,
the disk and the walltime. Log lines scroll above the panel.

rich is an optional dependency (`pip install 'farmhand[display]'`): this module imports it
only inside its functions, and the agent imports this module only for `--display`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from farmhand.runtime.resources.walltime import describe
from farmhand.runtime.tally import OUTCOMES, AgentView, snapshot

if TYPE_CHECKING:
    from farmhand.runtime.agent import Agent

__all__ = ["render", "run_with_display", "unavailable"]

#: Records listed at most; the rest are summed up in one line.
MAX_ROWS = 20
STATE_STYLE = {"working": "green", "paused": "yellow", "draining": "magenta", "stopping": "red"}


def unavailable() -> str | None:
    """Why the display cannot be drawn here (rich is missing), or None."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return "--display needs rich: pip install 'farmhand[display]'"
    return None


def render(view: AgentView) -> Any:
    """The panel for one moment of the agent (a rich renderable)."""
    from rich.console import Group
    from rich.markup import escape as e  # keys, paths and errors may hold [brackets]
    from rich.panel import Panel
    from rich.table import Table

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("server", _server(view, e))
    running = sum(run.phase != "queued" for run in view.runs)
    slots = f"{running} of {view.slots} busy"
    if view.prefetch:
        slots += f" · prefetch queue {view.queued} of {view.prefetch}"
    facts.add_row("slots", slots)
    counts = " · ".join(f"{o} {view.counts.get(o, 0)}" for o in OUTCOMES)
    facts.add_row("runs", counts)
    facts.add_row("outbox", f"{view.outbox} report(s) waiting" if view.outbox else "empty")
    facts.add_row("disk", e(_disk(view)))
    facts.add_row("walltime", f"{describe(view.walltime_left)} left")
    if view.paused:
        facts.add_row("paused", f"[yellow]{e(view.paused)}[/yellow]")

    runs = Table(expand=True, box=None, header_style="bold")
    for name, justify in (("record", "left"), ("run", "right"), ("phase", "left")):
        runs.add_column(name, justify=justify)  # type: ignore[arg-type]
    runs.add_column("elapsed", justify="right")
    for run in view.runs[:MAX_ROWS]:
        runs.add_row(e(run.key), str(run.run_id), run.phase, describe(run.elapsed))
    if len(view.runs) > MAX_ROWS:
        runs.add_row(f"… and {len(view.runs) - MAX_ROWS} more", "", "", "")
    if not view.runs:
        runs.add_row("[dim]nothing in hand[/dim]", "", "", "")

    style = STATE_STYLE.get(view.state, "white")
    title = f"farmhand agent [bold]{e(view.name)}[/bold] · [{style}]{view.state}[/{style}]"
    return Panel(Group(facts, "", runs), title=title, title_align="left")


def _server(view: AgentView, e: Callable[[str], str]) -> str:
    if view.connected is None:
        return f"{e(view.server)} [dim](not asked yet)[/dim]"
    ago = "" if view.last_contact is None else f"last answer {describe(view.last_contact)} ago"
    if view.connected:
        return f"{e(view.server)} [green]connected[/green] ({ago})"
    error = e(view.server_error or "")
    return f"{e(view.server)} [red]unreachable[/red] ({ago or 'never answered'}): {error}"


def _disk(view: AgentView) -> str:
    if view.disk_used is None:
        return f"{view.disk_path} (not measured)"
    limit = f", limit {view.disk_limit:g}%" if view.disk_limit is not None else ""
    return f"{view.disk_path} {view.disk_used:.1f}% used{limit}"


def run_with_display(agent: Agent, level: int) -> int:
    """Run the agent under a live panel; log lines go above it. Returns `agent.run()`."""
    from rich.console import Console
    from rich.live import Live
    from rich.logging import RichHandler

    console = Console(stderr=True)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="%H:%M:%S", handlers=[handler])
    with Live(
        console=console,
        refresh_per_second=2,
        get_renderable=lambda: render(snapshot(agent)),
    ):
        return agent.run()
