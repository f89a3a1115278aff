"""What an agent offers, from its command line: its runners and its resources.

`farmhand agent` reads the runner definitions and detects (or is told) its cores, GPUs and
memory before it contacts any server, so a wrong definition or flag stops it at once, and
`farmhand agent --list-runners` can show the result without a server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farmhand.cli import output
from farmhand.runtime.resources.node import NodeResources, detect, parse_gpus, parse_memory
from farmhand.runtime.runners import definitions

__all__ = ["OfferError", "add_arguments", "from_args", "listing"]


class OfferError(ValueError):
    """A runner definition or a resource flag is wrong; the message says which and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's runner and resource options."""
    parser.add_argument(
        "--runners-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="read runner definitions (*.toml) from DIR too, after "
        "~/.config/farmhand/runners.d (repeatable; later ones win)",
    )
    parser.add_argument(
        "--list-runners",
        action="store_true",
        help="print the runners and resources this agent would offer, then exit",
    )
    parser.add_argument(
        "--cores", type=float, help="cores to hand out (default: Slurm, affinity, cgroup)"
    )
    parser.add_argument(
        "--gpus",
        metavar="N|IDS",
        help="GPUs to hand out: a count or device ids like 0,2 "
        "(default: CUDA_VISIBLE_DEVICES, Slurm, /proc/driver/nvidia)",
    )
    parser.add_argument(
        "--memory",
        metavar="SIZE",
        help="memory to hand out, MiB or a size like 64G (default: Slurm, cgroup, /proc/meminfo)",
    )


def from_args(args: argparse.Namespace) -> tuple[definitions.Runners, NodeResources]:
    """The runners and the resource totals the parsed options describe."""
    try:
        runners = definitions.load([Path(d) for d in args.runners_dir])
    except definitions.DefinitionError as exc:
        raise OfferError(str(exc)) from exc
    try:
        resources = detect(
            cores=args.cores,
            gpus=None if args.gpus is None else parse_gpus(args.gpus),
            memory_mb=None if args.memory is None else parse_memory(args.memory, "--memory"),
        )
    except ValueError as exc:
        raise OfferError(str(exc)) from exc
    return runners, resources


def listing(runners: definitions.Runners, resources: NodeResources) -> str:
    """The text `--list-runners` prints: a table of runners, then the resources."""
    rows = [entry.row() for entry in runners.entries.values()]
    table = output.table(rows, ["name", "kind", "engine", "image", "status", "source"])
    return f"{table}\n\nresources: {resources.describe()}"
