"""`farmhand results`: a campaign's results as a table (CSV or JSON lines), streamed."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from farmhand import wire
from farmhand.cli import refs
from farmhand.cli.base import connect
from farmhand.cli.records.listing import add_where, record_state, where_filters

__all__ = ["add_parser", "cmd_results", "print_failures"]


def cmd_results(args: argparse.Namespace) -> int:
    """Print (or write to -o FILE) one row per record: key, state, each param, each result
    field, attempts, runtime_s, error."""
    where = where_filters(args.where)
    state = record_state(args.state)
    client = connect(args)
    campaign = refs.find_campaign(client, args.campaign)
    chunks = client.results_stream(campaign.id, format=args.format, state=state, where=where)
    if args.output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return 0
    target = Path(args.output)
    # Written beside the target and renamed: an interrupted export leaves no half file.
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return 0


def add_parser(sub: argparse._SubParsersAction, client_opts: argparse.ArgumentParser) -> None:
    """Add `results` to the `farmhand` parser."""
    p = sub.add_parser(
        "results",
        parents=[client_opts],
        help="a campaign's results as a table (CSV or JSON lines)",
        description="One row per record: key, state, each param, each field of the result "
        "document (nested fields joined with dots), attempts, runtime_s, error.",
    )
    p.add_argument("--campaign", required=True, help="NAME (newest version), NAME:VERSION or id")
    p.add_argument(
        "--format", choices=["csv", "jsonl"], default="csv", help="csv (default) or JSON lines"
    )
    p.add_argument("--state", help="only records in this state")
    add_where(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_results)


def print_failures(groups: list[wire.FailureGroups], labels: dict[int, str]) -> None:
    """`farmhand status --failures`: each campaign's failed records grouped by cause."""
    for found in groups:
        if not found.failed:
            continue
        read = "" if found.scanned == found.failed else f", grouped: the newest {found.scanned:,}"
        print(f"\nfailures of {labels[found.campaign_id]} ({found.failed:,} failed{read}):")
        for group in found.groups:
            print(f"  {group.count:>6,}  {group.signature}")
            newest = group.records[0]
            tail = (group.stderr_tail or "").strip().splitlines()
            said = f": {tail[-1].strip()}" if tail else ""
            print(f"           e.g. {newest.key} (#{newest.id}): {group.error}{said}")
            keys = ", ".join(r.key for r in group.records[:10])
            more = group.count - min(len(group.records), 10)
            print(f"           {keys}{f' (+{more:,} more)' if more > 0 else ''}")
