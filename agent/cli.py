"""The `farmhand` command. Client commands read FARMHAND_SERVER and FARMHAND_TOKEN.

`farmhand server` lives in `farmhand.server.cli` and is found through an entry point, so
nothing here imports server code: an agent on a compute node never loads fastapi or
sqlalchemy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from farmhand.agent import campaign_file, cli_agent, output, refs, wire
from farmhand.agent.client import ApiError, FarmhandClient, FarmhandError

EPILOG = (
    "environment: FARMHAND_SERVER (server URL for client commands), FARMHAND_TOKEN (bearer "
    "token), FARMHAND_ADMIN_TOKEN, FARMHAND_DATA_DIR, FARMHAND_DATABASE_URL (server)"
)


#: Commands whose code lives outside the agent, found through the `farmhand.commands` entry
#: point group, so the agent never imports them (invariant 4).
EXTERNAL = {"server": "run the server (see `farmhand server --help`)"}


class CliError(Exception):
    """A one-line error for the user; exit status 1."""


# --- helpers -----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> FarmhandClient:
    if not (args.server or os.environ.get("FARMHAND_SERVER")):
        raise CliError("no server: pass --server URL or set FARMHAND_SERVER")
    if not (args.token or os.environ.get("FARMHAND_TOKEN")):
        raise CliError(
            "no token: set FARMHAND_TOKEN (the server prints an admin token at first start and "
            "keeps it in <data-dir>/admin.token; `farmhand token create` makes more)"
        )
    return FarmhandClient(args.server, args.token)


# --- commands ----------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a tasklist or TOML campaign file."""
    try:
        parsed = campaign_file.read(Path(args.file))
    except campaign_file.CampaignFileError as exc:
        raise CliError(str(exc)) from exc
    name = args.campaign or parsed.name
    if not name:
        raise CliError(f"{args.file} names no campaign: pass --campaign NAME")
    client = _client(args)
    try:
        campaign = refs.find_campaign(client, name)
    except refs.RefError:
        if ":" in name or name.isdigit():
            raise
        campaign = client.create_campaign(name, software=parsed.software, defaults=parsed.defaults)
    answer = client.submit(campaign.id, parsed.records)
    if args.json:
        print(
            json.dumps(
                {
                    "campaign": campaign.model_dump(mode="json"),
                    **answer.model_dump(mode="json"),
                },
                indent=2,
            )
        )
        return 0
    line = f"submitted {answer.created} records to {campaign.name} v{campaign.version}"
    if answer.skipped:
        line += f"; skipped {answer.skipped} whose keys already exist"
    print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Counts by state for every campaign, and the agents."""
    client = _client(args)
    campaigns = client.campaigns()
    agents = client.agents()
    if args.json:
        print(
            json.dumps(
                {
                    "campaigns": [c.model_dump(mode="json") for c in campaigns],
                    "agents": {
                        "active": sum(a.state == "active" for a in agents),
                        "total": len(agents),
                    },
                },
                indent=2,
            )
        )
        return 0
    rows = []
    for c in campaigns:
        total = sum(c.counts.values())
        row: dict[str, Any] = {"campaign": f"{c.name} v{c.version}", "total": total}
        row.update({s.value: c.counts.get(s, 0) for s in wire.RecordState})
        rows.append(row)
    if rows:
        print(output.table(rows, ["campaign", "total", *[s.value for s in wire.RecordState]]))
    else:
        print("no campaigns yet: farmhand submit FILE --campaign NAME")
    active = [a for a in agents if a.state == "active"]
    print(f"\nagents: {len(active)} active, {sum(a.running for a in active)} runs in progress")
    return 0


LS_COLUMNS = {
    "campaigns": ["id", "name", "version", "software", "created_at", "started_at"],
    "records": ["id", "key", "state", "attempts", "error", "result"],
    "runs": ["id", "record_id", "agent_id", "attempt", "state", "exit_code", "error"],
    "agents": ["id", "name", "host", "slots", "state", "running", "last_heartbeat", "status"],
}


def cmd_ls(args: argparse.Namespace) -> int:
    """List campaigns, records, runs or agents."""
    client = _client(args)
    items: list[Any]
    if args.what == "campaigns":
        items = client.campaigns()
    elif args.what == "agents":
        items = client.agents()
    elif args.what == "records":
        campaign_id = refs.find_campaign(client, args.campaign).id if args.campaign else None
        state = wire.RecordState(args.state) if args.state else None
        items = []
        for record in client.records(campaign_id=campaign_id, state=state):
            items.append(record)
            if len(items) >= args.limit:
                break
    else:
        items = client.runs_page(limit=min(args.limit, 1000), state=args.state).items
    if args.json:
        output.dump(items)
        return 0
    rows = [i.model_dump(mode="json") for i in items]
    if args.what == "agents":  # one readable line, not the status document
        for row, agent in zip(rows, items, strict=True):
            row["status"] = output.agent_status(agent.status)
    print(output.table(rows, LS_COLUMNS[args.what]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Everything about one record."""
    client = _client(args)
    (record_id,) = refs.find_record_ids(client, [args.record], args.campaign)
    record = client.record(record_id)
    if args.json:
        output.dump(record)
        return 0
    for name in (
        "id",
        "key",
        "campaign_id",
        "state",
        "attempts",
        "max_attempts",
        "priority",
        "command",
        "error",
    ):
        print(f"{name + ':':14}{output.cell(getattr(record, name))}")
    print(f"{'run_args:':14}{json.dumps(record.derived_run_args)}")
    print(f"{'result:':14}{json.dumps(record.result)}")
    print("\nruns:")
    runs = [r.model_dump(mode="json") for r in record.runs or []]
    print(
        output.table(
            runs,
            ["id", "attempt", "agent_id", "state", "exit_code", "started_at", "ended_at", "error"],
        )
    )
    last = (record.runs or [None])[-1]
    if last is not None and last.stderr_tail:
        print("\nstderr (last run, tail):\n" + last.stderr_tail.rstrip())
    return 0


PAST = {"cancel": "cancelled", "retry": "re-queued"}


def _change(verb: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        client = _client(args)
        ids = refs.find_record_ids(client, args.records, args.campaign)
        changed = getattr(client, verb)(ids).changed
        print(f"{PAST[verb]} {len(changed)} records")
        return 0

    command.__doc__ = f"{verb.capitalize()} records."
    return command


def cmd_token(args: argparse.Namespace) -> int:
    """Create a bearer token."""
    client = _client(args)
    created = client.create_token(args.role, name=args.name)
    if args.json:
        output.dump(created)
    else:
        print(created.token)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the sample campaign end to end."""
    from farmhand.agent import demo

    return demo.run(records=args.records, agents=args.agents, keep=args.keep)


# --- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="farmhand", description=__doc__.splitlines()[0], epilog=EPILOG
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client_opts = argparse.ArgumentParser(add_help=False)
    client_opts.add_argument("--server", help="server URL (default: $FARMHAND_SERVER)")
    client_opts.add_argument("--token", help="bearer token (default: $FARMHAND_TOKEN)")
    json_opt = argparse.ArgumentParser(add_help=False)
    json_opt.add_argument("--json", action="store_true", help="print JSON")

    # Commands other packages provide (the server): listed here, dispatched in main().
    for name, text in EXTERNAL.items():
        sub.add_parser(name, help=text, add_help=False)

    cli_agent.add_parser(sub, [client_opts])

    p = sub.add_parser(
        "submit", parents=[client_opts, json_opt], help="submit a tasklist or TOML campaign file"
    )
    p.add_argument("file", help="tasklist (one command per line) or campaign .toml")
    p.add_argument(
        "--campaign", help="campaign NAME (latest version, created if missing) or NAME:VERSION"
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", parents=[client_opts, json_opt], help="counts by state")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("ls", parents=[client_opts, json_opt], help="list things")
    p.add_argument("what", choices=sorted(LS_COLUMNS))
    p.add_argument("--campaign", help="records: only this campaign (NAME, NAME:VERSION, id)")
    p.add_argument("--state", help="records/runs: only this state")
    p.add_argument("--limit", type=_positive_int, default=1000)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[client_opts, json_opt], help="show one record")
    p.add_argument("record", help="record id or key")
    p.add_argument("--campaign", help="campaign the key is in")
    p.set_defaults(func=cmd_show)

    for verb in ("cancel", "retry"):
        p = sub.add_parser(verb, parents=[client_opts], help=f"{verb} records")
        p.add_argument("records", nargs="+", help="record ids or keys")
        p.add_argument("--campaign", help="campaign the keys are in")
        p.set_defaults(func=_change(verb))

    p = sub.add_parser("token", help="manage tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", parents=[client_opts, json_opt], help="create a token")
    t.add_argument("--role", required=True, choices=[r.value for r in wire.Role])
    t.add_argument("--name", default="")
    t.set_defaults(func=cmd_token)

    p = sub.add_parser("demo", help="run a sample campaign on a throwaway server")
    p.add_argument("--records", type=_positive_int, default=60)
    p.add_argument("--agents", type=_positive_int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the demo's data directory")
    p.set_defaults(func=cmd_demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _external(name: str, argv: list[str]) -> int:
    """Run a command another part of farmhand registered under `farmhand.commands`."""
    found = entry_points(group="farmhand.commands", name=name)
    if not found:
        raise CliError(f"'{name}' is not installed: pip install 'farmhand[server]'")
    try:
        command = next(iter(found)).load()
    except ImportError as exc:
        raise CliError(
            f"'{name}' needs the server extra: pip install 'farmhand[server]' ({exc})"
        ) from exc
    return command(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `farmhand` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in EXTERNAL:
            return _external(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (CliError, cli_agent.AgentUsageError, refs.RefError, FarmhandError) as exc:
        message = exc.detail if isinstance(exc, ApiError) else str(exc)
        print(f"farmhand: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
