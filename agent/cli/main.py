"""The `farmhand` command. Client commands read FARMHAND_SERVER and the token's variables.

`farmhand server` lives in `farmhand.server.cli` and is found through an entry point, so
nothing here imports server code: an agent on a compute node never loads fastapi or
sqlalchemy.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from farmhand.cli.base import CliError, connect, positive_int

EPILOG = (
    "environment: FARMHAND_SERVER (server URL for client commands), FARMHAND_TOKEN_FILE (a "
    "file holding the bearer token, mode 0600), FARMHAND_TOKEN (the token itself), "
    "FARMHAND_UMASK (agent and server), FARMHAND_ADMIN_TOKEN, FARMHAND_DATA_DIR, "
    "FARMHAND_DATABASE_URL (server)"
)


#: Commands whose code lives outside the agent, found through the `farmhand.commands` entry
#: point group, so the agent never imports them (invariant 4).
EXTERNAL = {"server": "run the server (see `farmhand server --help`)"}

#: The commands each command family (module `farmhand.cli.<family>`) adds, in the order of
#: `farmhand --help`. `farmhand COMMAND` imports only COMMAND's family: an agent starting on
#: a compute node (often from a shared filesystem) reads no code for `submit` or `export`.
FAMILIES = {
    "agent": ("agent",),
    "campaigns.submit": ("campaign", "submit"),
    "records.listing": ("ls", "show"),
    "records.steering": ("cancel", "retry"),
    "records.results": ("results",),
    "snapshots": ("get",),
    "bundles": ("export", "import", "backup", "restore"),
    "autoscale": ("autoscale",),
}
#: Commands whose arguments after `--` are handed on (to sbatch or qsub) as `scheduler_args`.
PASS_ON = ("autoscale",)
#: The commands this module adds itself.
OWN = ("status", "token", "demo")


# --- commands ----------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """Counts by state for every campaign, and the agents."""
    from farmhand import wire
    from farmhand.cli import output, refs
    from farmhand.cli.campaigns.submit import label
    from farmhand.client import NotFound

    client = connect(args)
    one = args.campaign and refs.find_campaign(client, args.campaign)
    campaigns = [one] if one else client.campaigns()
    agents = client.agents()
    try:
        farm = client.farm_status()
    except NotFound:  # a server older than GET /status
        farm = None
    if args.json:
        counts = {"active": sum(a.state == "active" for a in agents), "total": len(agents)}
        answer: dict[str, Any] = {"campaigns": [c.model_dump(mode="json") for c in campaigns]}
        answer["agents"] = {**(farm.agents if farm else {}), **counts}
        if farm is not None:
            answer.update(ready=farm.ready, stuck=[s.model_dump() for s in farm.stuck])
        line = _allocations_line(client)
        if line:
            answer["batch_jobs"] = line
        if args.failures:
            answer["failures"] = [
                client.failures(c.id).model_dump(mode="json")
                for c in campaigns
                if c.counts.get(wire.RecordState.failed)
            ]
        print(json.dumps(answer, indent=2))
        return 0
    rows = []
    for c in campaigns:
        total = sum(c.counts.values())
        row: dict[str, Any] = {"campaign": label(c), "total": total}
        row.update({s.value: c.counts.get(s, 0) for s in wire.RecordState})
        rows.append(row)
    if rows:
        print(output.table(rows, ["campaign", "total", *[s.value for s in wire.RecordState]]))
    else:
        print("no campaigns yet: farmhand submit FILE --campaign NAME")
    active = [a for a in agents if a.state == "active"]
    print(f"\nagents: {len(active)} active, {sum(a.running for a in active)} runs in progress")
    line = _allocations_line(client)
    if line:
        print(line)
    if farm is not None and farm.stuck:
        print("\nnot moving:")
        for stuck in farm.stuck:
            print(f"  {stuck.message}")
    if args.failures:
        from farmhand.cli.records.results import print_failures

        failed = [c for c in campaigns if c.counts.get(wire.RecordState.failed)]
        print_failures([client.failures(c.id) for c in failed], {c.id: label(c) for c in failed})
    return 0


def _allocations_line(client: Any) -> str | None:
    """`batch jobs: 2 pending, 1 running for 40 ready records` while autoscalers have
    jobs; None when none do (or the server predates allocations)."""
    from farmhand.client import ApiError

    try:
        found = client.allocations(live=True)
    except ApiError:  # older server (404), or a token that may not read them
        return None
    if not found.allocations:
        return None
    pending = sum(a.state == "pending" for a in found.allocations)
    running = len(found.allocations) - pending
    ready = sum(int(s.status.get("ready") or 0) for s in found.autoscalers)
    unfit = sum(u["count"] for s in found.autoscalers for u in s.status.get("unfit") or [])
    line = f"batch jobs: {pending} pending, {running} running for {ready:,} ready records"
    return line + (f" ({unfit:,} more fit no job)" if unfit else "")


def cmd_token(args: argparse.Namespace) -> int:
    """Create a bearer token."""
    from farmhand.cli import output

    client = connect(args)
    created = client.create_token(args.role, name=args.name)
    if args.json:
        output.dump(created)
    else:
        print(created.token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    """List the server's tokens (never their secrets)."""
    from farmhand.cli import output

    tokens = connect(args).tokens()
    if args.json:
        output.dump(tokens)
    else:
        rows = [t.model_dump() for t in tokens]
        print(output.table(rows, ["id", "role", "name", "created_at", "revoked"]))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Revoke tokens by id; every id is tried, the exit status says whether all worked."""
    from farmhand.client import ApiError

    client, failed = connect(args), 0
    for token_id in args.ids:
        try:
            revoked = client.revoke_token(token_id)
        except ApiError as exc:
            print(f"farmhand: token {token_id}: {exc.detail}", file=sys.stderr)
            failed += 1
            continue
        named = f", {revoked.name}" if revoked.name else ""
        print(f"revoked token {revoked.id} ({revoked.role.value}{named})")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the sample campaign end to end."""
    from farmhand.cli import demo

    return demo.run(records=args.records, agents=args.agents, keep=args.keep)


# --- parser ------------------------------------------------------------------------------


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser for every subcommand, or, given `command`, for that one alone
    (only its module is imported; `--version` needs none)."""
    parser = argparse.ArgumentParser(
        prog="farmhand", description=__doc__.splitlines()[0], epilog=EPILOG
    )
    if command in (None, "--version"):  # after a command, `--version` is not ours to take
        parser.add_argument("--version", action="version", version=f"farmhand {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client_opts = argparse.ArgumentParser(add_help=False)
    client_opts.add_argument("--server", help="server URL (default: $FARMHAND_SERVER)")
    client_opts.add_argument(
        "--token", help="bearer token (default: $FARMHAND_TOKEN); visible in ps: prefer a file"
    )
    client_opts.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the bearer token from PATH, mode 0600 (default: $FARMHAND_TOKEN_FILE)",
    )
    json_opt = argparse.ArgumentParser(add_help=False)
    json_opt.add_argument("--json", action="store_true", help="print JSON")

    def wanted(*names: str) -> bool:
        return command is None or command in names

    # Commands other packages provide (the server): listed here, dispatched in main().
    for name, text in EXTERNAL.items():
        if wanted(name):
            sub.add_parser(name, help=text, add_help=False)
    for family, names in FAMILIES.items():
        if wanted(*names):
            _add_family(family, sub, client_opts, json_opt)
        if family == "campaigns.submit" and wanted("status"):  # `status` is listed after `submit`
            _add_status(sub, client_opts, json_opt)
    if wanted("token"):
        _add_token(sub, client_opts, json_opt)
    if wanted("demo"):
        p = sub.add_parser("demo", help="run a sample campaign on a throwaway server")
        p.add_argument(
            "--records", type=positive_int, default=60, help="records in the sample (default 60)"
        )
        p.add_argument("--agents", type=positive_int, default=2, help="agent processes (default 2)")
        p.add_argument(
            "--keep",
            action="store_true",
            help="keep the demo's data directory and leave its server running (prints its URL, "
            "token and how to stop it)",
        )
        p.set_defaults(func=cmd_demo)
    return parser


def _add_family(family: str, sub: Any, client_opts: argparse.ArgumentParser, json_opt: Any) -> None:
    """Import the module `farmhand.cli.<family>` and add its commands."""
    module = importlib.import_module(f"farmhand.cli.{family}")
    if family == "agent":
        module.add_parser(sub, [client_opts])
    elif family == "records.results":
        module.add_parser(sub, client_opts)
    else:
        module.add_parsers(sub, client_opts, json_opt)


def _add_status(sub: Any, client_opts: argparse.ArgumentParser, json_opt: Any) -> None:
    p = sub.add_parser("status", parents=[client_opts, json_opt], help="counts by state")
    p.add_argument("--campaign", help="only this campaign (NAME, NAME:VERSION, id)")
    p.add_argument(
        "--failures",
        action="store_true",
        help="also each campaign's failed records grouped by cause (error and last stderr "
        "line, numbers and paths masked)",
    )
    p.set_defaults(func=cmd_status)


def _add_token(sub: Any, client_opts: argparse.ArgumentParser, json_opt: Any) -> None:
    from farmhand import wire

    p = sub.add_parser("token", help="manage tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", parents=[client_opts, json_opt], help="create a token")
    t.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in wire.Role],
        help="agent: claims and reports; submitter: submits and steers; admin: everything",
    )
    t.add_argument("--name", default="", help="a label shown by `token list`")
    t.set_defaults(func=cmd_token)
    t = tsub.add_parser("list", parents=[client_opts, json_opt], help="list tokens (no secrets)")
    t.set_defaults(func=cmd_token_list)
    t = tsub.add_parser("revoke", parents=[client_opts], help="revoke tokens for good")
    t.add_argument("ids", nargs="+", type=int, metavar="ID", help="token ids (`token list`)")
    t.set_defaults(func=cmd_token_revoke)


def _version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("farmhand")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _external(name: str, argv: list[str]) -> int:
    """Run a command another part of farmhand registered under `farmhand.commands`."""
    from importlib.metadata import entry_points

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
        passed: list[str] = []
        if argv and argv[0] in PASS_ON and "--" in argv:
            cut = argv.index("--")
            argv, passed = argv[:cut], argv[cut + 1 :]
        args = build_parser(_named(argv)).parse_args(argv)
        if passed:
            args.scheduler_args = passed
        return args.func(args)
    except _user_errors() as exc:
        errors = sys.modules.get("farmhand.client.errors")
        message = exc.detail if errors and isinstance(exc, errors.ApiError) else str(exc)
        print(f"farmhand: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `farmhand ls records | head`: the reader had enough
        # Point stdout at /dev/null, so the interpreter's last flush at exit fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _named(argv: list[str]) -> str | None:
    """The command `argv` names, or `--version`: the parser needs only its part. None (build
    it all) for `--help`, a mistyped command and the like: argparse lists every command."""
    first = argv[0] if argv else ""
    commands = {*EXTERNAL, *OWN, *(name for names in FAMILIES.values() for name in names)}
    return first if first in commands or first == "--version" else None


#: What the CLI prints as a one-line error (exit status 1), by module and name.
USER_ERRORS = (
    ("farmhand.cli.base", "CliError"),
    ("farmhand.cli.agent", "AgentUsageError"),
    ("farmhand.cli.refs", "RefError"),
    ("farmhand.client.errors", "FarmhandError"),
)


def _user_errors() -> tuple[type[Exception], ...]:
    """The classes of USER_ERRORS whose modules are loaded: a module never imported raised
    nothing, and importing it (httpx, the wire models) only to catch would slow every start."""
    return tuple(
        getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules
    )


if __name__ == "__main__":
    sys.exit(main())
