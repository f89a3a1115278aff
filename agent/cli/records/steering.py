"""`farmhand cancel` and `retry`: steering records by id, by key or by a filter.

Records are named by key within `--campaign` (`relax-4.05`), or by id written `#17` (a bare
number is an id only without `--campaign`: with it, it is a key). A filter — `--campaign C`
with `--state`, `--dataset`, `--key-prefix`, `--tag` and `--where` — acts on every matching
record, request after request; above `CONFIRM_ABOVE` records it asks first (or takes
`--yes`).
"""

from __future__ import annotations

import argparse
import sys

from farmhand import wire
from farmhand.cli import output, refs
from farmhand.cli.base import (
    CliError,
    add_assignments,
    add_force_flags,
    assignments,
    check_force,
    connect,
)
from farmhand.cli.records.listing import add_where, record_state, where_filters
from farmhand.client import FarmhandClient

__all__ = ["CONFIRM_ABOVE", "add_parsers", "cmd_cancel", "cmd_retry"]

#: A filter matching more records than this asks before it acts (unless --yes).
CONFIRM_ABOVE = 1000


def _filter(client: FarmhandClient, args: argparse.Namespace) -> wire.RecordFilter | None:
    """The filter the options describe, or None when none is given."""
    given = (args.state, args.dataset, args.key_prefix, args.tag, args.where)
    if not (any(given) or getattr(args, "all", False)):
        return None
    if args.records:
        raise CliError(
            "name records or filter them (--state, --dataset, --key-prefix, --tag, --where), "
            "not both"
        )
    if not args.campaign:
        raise CliError("a filter acts within one campaign: pass --campaign NAME")
    return wire.RecordFilter(
        campaign_id=refs.find_campaign(client, args.campaign).id,
        state=record_state(args.state),
        dataset=args.dataset,
        key_prefix=args.key_prefix or None,
        tag=args.tag or None,
        where=where_filters(args.where) or [],
    )


def _confirm(client: FarmhandClient, chosen: wire.RecordFilter, verb: str, yes: bool) -> bool:
    """Count what the filter matches; above CONFIRM_ABOVE ask (a terminal) or need --yes."""
    if chosen.key_prefix or chosen.tag:  # the count that knows them (servers since 19)
        total = client.count_records(chosen).total
    else:
        page = client.records_page(
            campaign_id=chosen.campaign_id,
            state=chosen.state,
            dataset=chosen.dataset,
            where=chosen.where or None,
            limit=1,
            count=True,
        )
        total = page.total or 0
    if total <= CONFIRM_ABOVE or yes:
        return True
    if not sys.stdin.isatty():
        raise CliError(f"{total:,} records match; pass --yes to {verb} them all")
    answer = input(f"{verb} {total:,} records? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _report(answer: wire.RecordsChanged, done: str) -> None:
    print(f"{done} {len(answer.changed)} records")
    if answer.reopened:
        print(f"reopened {answer.reopened} descendants that had failed upstream")
    reasons: dict[str, int] = {}
    for skipped in answer.skipped:
        reasons[skipped.reason] = reasons.get(skipped.reason, 0) + 1
    shown = answer.skipped[:20]
    for skipped in shown:
        print(f"skipped {skipped.key} (#{skipped.id}): {skipped.reason}")
    if len(answer.skipped) > len(shown):
        print(f"skipped {len(answer.skipped) - len(shown)} more:")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            print(f"  {count:>8,}  {reason}")


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel records by key or id, or every record a filter matches that has not ended."""
    client = connect(args)
    chosen = _filter(client, args)
    if chosen is None:
        if not args.records:
            raise CliError("name the records to cancel, or filter them with --campaign C --state S")
        answer = client.cancel(refs.find_record_ids(client, args.records, args.campaign))
    elif not _confirm(client, chosen, "cancel", args.yes):
        print("nothing cancelled")
        return 1
    else:
        answer = client.act_by_filter(client.cancel, chosen)
    if args.json:
        output.dump(answer)
    else:
        _report(answer, "cancelled")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Re-queue records (by key or id, by a filter, or every orphan), optionally with
    temporary run_args."""
    check_force(args)
    run_args = assignments(args.run_arg) or None
    client = connect(args)
    flags = {
        "force": args.force,
        "force_ignores_success": args.force_ignores_success,
        "run_args": run_args,
    }
    chosen = _filter(client, args)
    if chosen is not None:
        if args.orphans:
            raise CliError("--orphans is a filter of its own: use --state orphaned instead")
        if not _confirm(client, chosen, "re-queue", args.yes):
            print("nothing re-queued")
            return 1
        answer = client.act_by_filter(client.retry, chosen, **flags)
    else:
        if not args.records and not args.orphans:
            raise CliError(
                "name the records to retry, filter them (--campaign C --state failed), "
                "or pass --orphans"
            )
        ids = refs.find_record_ids(client, args.records, args.campaign) if args.records else []
        orphans_of = None  # --campaign limits --orphans (and names the keys' campaign)
        if args.orphans and args.campaign:
            orphans_of = refs.find_campaign(client, args.campaign).id
        answer = client.retry(ids, orphans=args.orphans, campaign_id=orphans_of, **flags)
    if args.json:
        output.dump(answer)
    else:
        _report(answer, "re-queued")
    return 0


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", help="filter: only records in this state")
    p.add_argument("--dataset", help="filter: only records of this dataset")
    p.add_argument("--key-prefix", help="filter: only records whose key starts with this")
    p.add_argument("--tag", help="filter: only records with this tag")
    add_where(p, "filter: ")
    p.add_argument(
        "--yes", action="store_true", help=f"act on more than {CONFIRM_ABOVE:,} without asking"
    )


def add_parsers(
    sub: argparse._SubParsersAction,
    client_opts: argparse.ArgumentParser,
    json_opt: argparse.ArgumentParser,
) -> None:
    """Add `cancel` and `retry` to the `farmhand` parser."""
    names = "record keys (within --campaign) or ids written #17"
    p = sub.add_parser(
        "cancel",
        parents=[client_opts, json_opt],
        help="cancel records",
        description="Cancel records by key or id, or every record of --campaign that a filter "
        "matches and that has not ended (done and failed ones are skipped, with the reason).",
    )
    p.add_argument("records", nargs="*", help=names)
    p.add_argument("--campaign", help="campaign the keys are in; the filters' campaign")
    p.add_argument("--all", action="store_true", help="filter: every record of --campaign")
    _add_filters(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser(
        "retry",
        parents=[client_opts, json_opt],
        help="re-queue records",
        description=(
            "Re-queue failed, cancelled or orphaned records with fresh attempts; records in "
            "other states are skipped with the reason unless --force. Name them, or filter "
            "a campaign: --campaign C --state failed [--where 'T>=600']."
        ),
    )
    p.add_argument("records", nargs="*", help=names)
    p.add_argument("--campaign", help="campaign the keys (or --orphans, or the filters) are in")
    p.add_argument("--orphans", action="store_true", help="every orphaned record (of --campaign)")
    _add_filters(p)
    add_force_flags(p, force="also re-queue waiting, ready and running records")
    add_assignments(p, "--run-arg", help="a run_arg for the next runs only")
    p.set_defaults(func=cmd_retry)
