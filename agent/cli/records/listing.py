"""`farmhand ls` and `show`: looking at work (`steering.py` cancels and retries it)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from farmhand import wire
from farmhand.cli import output, refs
from farmhand.cli import snapshots as cli_snapshots
from farmhand.cli.base import (
    CliError,
    connect,
    non_negative_int,
)

__all__ = [
    "LS_COLUMNS",
    "add_parsers",
    "add_where",
    "cmd_ls",
    "cmd_show",
    "record_state",
    "where_filters",
]

LS_COLUMNS = {
    "campaigns": [
        "id",
        "name",
        "version",
        "software",
        "based_on",
        "created_at",
        "started_at",
        "finished_at",
    ],
    "records": ["id", "key", "state", "params", "attempts", "error", "result"],
    "runs": ["id", "record_id", "agent_id", "attempt", "state", "exit_code", "error"],
    "agents": ["id", "name", "host", "slots", "state", "running", "last_heartbeat", "status"],
    "snapshots": cli_snapshots.COLUMNS,
    "allocations": ["id", "autoscaler", "job", "state", "submitted_at", "agents", "submitted_for"],
}


def record_state(text: str | None) -> wire.RecordState | None:
    if text is None:
        return None
    try:
        return wire.RecordState(text)
    except ValueError:
        known = ", ".join(s.value for s in wire.RecordState)
        raise CliError(f"no record state '{text}'; use one of {known}") from None


def cmd_ls(args: argparse.Namespace) -> int:
    """List campaigns, records, runs, agents or snapshots."""
    if args.what not in ("records", "runs") and args.campaign:
        raise CliError(f"--campaign filters records and runs, not {args.what}")
    if args.what != "records" and (args.dataset or args.where):
        raise CliError(f"--dataset and --where filter records, not {args.what}")
    client = connect(args)
    items: list[Any]
    if args.what == "campaigns":
        items = client.campaigns(archived=args.archived)
    elif args.what == "agents":
        items = client.agents()
    elif args.what == "snapshots":
        items = cli_snapshots.list_snapshots(client, args.limit)
    elif args.what == "allocations":
        return _allocations(client, args.json)
    elif args.what == "records":
        filters = {
            "campaign_id": refs.find_campaign(client, args.campaign).id if args.campaign else None,
            "state": record_state(args.state),
            "dataset": args.dataset,
            "where": where_filters(args.where),
        }
        items = _first(client.records_page, filters, args.limit, "records")
    else:
        campaign_id = refs.find_campaign(client, args.campaign).id if args.campaign else None
        filters = {"state": args.state, "campaign_id": campaign_id}
        items = _first(client.runs_page, filters, args.limit, "runs")
    if args.json:
        output.dump(items)
        return 0
    rows = [i.model_dump(mode="json") for i in items]
    if args.what == "records":
        for row in rows:
            row["params"] = output.params_text(row["params"]) or None
    if args.what == "agents":  # one readable line, not the status document
        for row, agent in zip(rows, items, strict=True):
            row["status"] = output.agent_status(agent.status)
    columns = LS_COLUMNS[args.what]
    if args.what == "records" and not any(row["params"] for row in rows):
        columns = [c for c in columns if c != "params"]  # a column only where there are params
    print(output.table(rows, columns))
    return 0


def _allocations(client: Any, as_json: bool) -> int:
    """The jobs autoscalers submitted, and what each autoscaler last said."""
    found = client.allocations()
    if as_json:
        output.dump(found)
        return 0
    rows = []
    for a in found.allocations:
        row = a.model_dump(mode="json")
        row["job"] = f"{a.scheduler} {a.job_id}"
        row["agents"] = ", ".join(a.agents) or None
        wanted = a.submitted_for
        row["submitted_for"] = ", ".join(f"{k}={v}" for k, v in wanted.items() if v) or None
        rows.append(row)
    print(output.table(rows, LS_COLUMNS["allocations"]))
    for scaler in found.autoscalers:
        status = scaler.status
        print(f"\nautoscaler {scaler.name} ({scaler.holder}): {status.get('message', '-')}")
        for unfit in status.get("unfit") or []:
            print(f"  not submitted for {unfit['count']} ready record(s): {unfit['reason']}")
        if status.get("last_error"):
            print(f"  last error: {status['last_error']}")
    return 0


def add_where(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """The repeatable `--where FILTER` option."""
    parser.add_argument(
        "--where",
        action="append",
        metavar="FILTER",
        help=f"{scope}only records whose params match, e.g. 'T>=600' (repeat: all must hold)",
    )


def where_filters(texts: list[str] | None) -> list[str] | None:
    """`--where` filters, checked here first so a typo is named before anything is asked."""
    for text in texts or ():
        try:
            wire.parse_where(text)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    return texts or None


def _first(page: Any, filters: dict[str, Any], limit: int, what: str) -> list[Any]:
    """The first `limit` items (0: all), page after page; says on stderr what was left out."""
    items: list[Any] = []
    after, total, more = None, None, False
    while True:
        size = 1000 if limit == 0 else min(1000, limit - len(items))
        extra = {"count": True} if what == "records" and after is None else {}
        got = page(after=after, limit=size, **filters, **extra)
        total = got.total if got.total is not None else total
        items += got.items
        if got.next is None:
            break
        if limit and len(items) >= limit:
            more = True
            break
        after = got.next
    if more:
        of = f" of {total}" if total is not None else ""
        print(f"{len(items)}{of} {what} shown (--limit 0 for all)", file=sys.stderr)
    return items


SHOWN = (
    "id",
    "key",
    "campaign_id",
    "state",
    "attempts",
    "max_attempts",
    "priority",
    "dataset",
    "tags",
    "parents",
    "children",
    "command",
    "error",
)


def cmd_show(args: argparse.Namespace) -> int:
    """Everything about one record."""
    client = connect(args)
    (record_id,) = refs.find_record_ids(client, [args.record], args.campaign)
    record = client.record(record_id)
    if args.json:
        output.dump(record)
        return 0
    for name in SHOWN:
        value = getattr(record, name)
        if isinstance(value, list):
            value = ", ".join(value) if value else None
        print(f"{name + ':':14}{output.cell(value)}")
    if record.state == wire.RecordState.ready and record.not_before is not None:
        print(f"{'not before:':14}{record.not_before.isoformat()}  (retry_delay after a failure)")
    if record.params:
        print(f"{'params:':14}{output.params_text(record.params)}")
    print(f"{'run_args:':14}{json.dumps(record.run_args)}")
    if record.temporary_run_args is not None:
        print(f"{'temporary:':14}{json.dumps(record.temporary_run_args)}  (until it ends again)")
    print(f"{'derived:':14}{json.dumps(record.derived_run_args)}")
    print(f"{'result:':14}{json.dumps(record.result)}")
    print("\nruns:")
    runs = [r.model_dump(mode="json") for r in record.runs or []]
    print(
        output.table(
            runs,
            [
                "id",
                "attempt",
                "agent_id",
                "state",
                "exit_code",
                "started_at",
                "ended_at",
                "run_args",
                "error",
            ],
        )
    )
    last = (record.runs or [None])[-1]
    if last is not None and last.stderr_tail:
        print("\nstderr (last run, tail):\n" + last.stderr_tail.rstrip())
    return 0


def add_parsers(
    sub: argparse._SubParsersAction,
    client_opts: argparse.ArgumentParser,
    json_opt: argparse.ArgumentParser,
) -> None:
    """Add `ls` and `show` to the `farmhand` parser."""
    p = sub.add_parser("ls", parents=[client_opts, json_opt], help="list things")
    p.add_argument("what", choices=sorted(LS_COLUMNS), help="what to list")
    p.add_argument(
        "--campaign", help="records and runs: only this campaign (NAME, NAME:VERSION, id)"
    )
    p.add_argument("--state", help="records/runs: only this state")
    p.add_argument("--archived", action="store_true", help="campaigns: archived ones too")
    p.add_argument("--dataset", help="records: only this dataset")
    add_where(p, "records: ")
    p.add_argument(
        "--limit", type=non_negative_int, default=1000, help="at most this many (0: all)"
    )
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[client_opts, json_opt], help="show one record")
    p.add_argument("record", help="record id or key")
    p.add_argument("--campaign", help="campaign the key is in")
    p.set_defaults(func=cmd_show)
