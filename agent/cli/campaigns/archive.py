"""`farmhand campaign archive|unarchive|delete`: campaigns out of the way.

Archived campaigns are hidden from `farmhand status`, `ls campaigns` and the overview page
(their records stay and may still run); `delete` removes a campaign with its records, runs
and results, after asking (or with `--yes`).
"""

from __future__ import annotations

import argparse
import json
import sys

from farmhand.cli import refs
from farmhand.cli.base import CliError, connect

__all__ = ["add_actions"]


def cmd_archive(args: argparse.Namespace) -> int:
    """Archive (or unarchive) the named campaigns."""
    client = connect(args)
    archived = args.campaign_command == "archive"
    for ref in args.campaigns:
        campaign = client.archive_campaign(refs.find_campaign(client, ref).id, archived=archived)
        print(f"{'archived' if archived else 'unarchived'} {campaign.name}:{campaign.version}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete one campaign after saying what goes with it."""
    client = connect(args)
    campaign = refs.find_campaign(client, args.campaign)
    label = f"{campaign.name}:{campaign.version}"
    total = sum(campaign.counts.values())
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"deleting {label} removes its {total:,} records; pass --yes")
        answer = input(f"delete campaign {label} and its {total:,} records? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    deleted = client.delete_campaign(campaign.id, force=args.force)
    if args.json:
        print(json.dumps(deleted.model_dump(mode="json"), indent=2))
        return 0
    line = f"deleted {label}: {deleted.records:,} records, {deleted.runs:,} runs"
    if deleted.cancelled:
        line += f" ({deleted.cancelled} live run(s) stopped first)"
    print(line)
    if deleted.unlinked:
        print(f"  no longer based on it: {', '.join(deleted.unlinked)}")
    return 0


def add_actions(
    csub: argparse._SubParsersAction,
    client_opts: argparse.ArgumentParser,
    json_opt: argparse.ArgumentParser,
) -> None:
    """Add `archive`, `unarchive` and `delete` to `farmhand campaign`."""
    for action, what in (
        ("archive", "hide campaigns from status, ls and the overview (they keep running)"),
        ("unarchive", "show archived campaigns again"),
    ):
        p = csub.add_parser(action, parents=[client_opts], help=what, description=what)
        p.add_argument("campaigns", nargs="+", metavar="CAMPAIGN", help="NAME[:VERSION] or id")
        p.set_defaults(func=cmd_archive)
    p = csub.add_parser(
        "delete",
        parents=[client_opts, json_opt],
        help="delete a campaign with its records, runs and results",
        description="Delete a campaign with its records, runs, results and checkpoints (its "
        "snapshots stay). Only the token that created it, or an admin, may. Refused while "
        "runs are live unless --force, and while other campaigns' records depend on it.",
    )
    p.add_argument("campaign", metavar="CAMPAIGN", help="NAME[:VERSION] or id")
    p.add_argument(
        "--force", action="store_true", help="stop its live runs first instead of refusing"
    )
    p.add_argument("--yes", action="store_true", help="do not ask before deleting")
    p.set_defaults(func=cmd_delete)
