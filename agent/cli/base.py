"""What every `farmhand` subcommand module shares: the one-line error, the connection to the
server, and argument types (whole numbers, `key=value` pairs)."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from farmhand.client import credentials

if TYPE_CHECKING:
    from farmhand.client import FarmhandClient

__all__ = [
    "CliError",
    "add_assignments",
    "add_force_flags",
    "assignment",
    "assignments",
    "check_force",
    "connect",
    "positive_int",
    "token_of",
]


class CliError(Exception):
    """A one-line error for the user; exit status 1."""


def connect(args: argparse.Namespace) -> FarmhandClient:
    """A client for `--server` and `--token`/`--token-file` (or FARMHAND_SERVER and
    FARMHAND_TOKEN/FARMHAND_TOKEN_FILE)."""
    if not (args.server or os.environ.get("FARMHAND_SERVER")):
        raise CliError("no server: pass --server URL or set FARMHAND_SERVER")
    token = token_of(args)
    if not token:
        raise CliError(
            "no token: pass --token-file PATH or set FARMHAND_TOKEN_FILE (or FARMHAND_TOKEN); "
            "the server prints an admin token at first start and keeps it in "
            "<data-dir>/admin.token, `farmhand token create` makes more"
        )
    from farmhand.client import FarmhandClient  # httpx and the wire models: not for --help

    return FarmhandClient(args.server, token)


def token_of(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str | None:
    """The token `--token`, `--token-file` or the environment give; CliError for a token
    file that cannot be used."""
    try:
        return credentials.resolve_token(
            getattr(args, "token", None), getattr(args, "token_file", None), environ
        )
    except credentials.TokenError as exc:
        raise CliError(str(exc)) from None


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    return _whole(text, 0)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _whole(text, 1)


def assignment(text: str) -> tuple[str, Any]:
    """An argparse type: `key=value`, the value parsed as JSON when it parses, else kept as
    text (so `timeout=30` is a number, `env={"A": "1"}` a table and `runner=podman` text)."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except ValueError:
        value = raw
    return key, value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity stay text


def assignments(pairs: list[tuple[str, Any]] | None) -> dict[str, Any]:
    """Repeated `key=value` arguments as one table; a key given twice is an error."""
    table: dict[str, Any] = {}
    for key, value in pairs or []:
        if key in table:
            raise CliError(f"{key} is given twice; give each key once")
        table[key] = value
    return table


def check_force(args: argparse.Namespace) -> None:
    """`--force-ignores-success` widens `--force`; alone it would silently do nothing."""
    if args.force_ignores_success and not args.force:
        raise CliError(
            "--force-ignores-success only widens --force (to records that are done): "
            "pass --force --force-ignores-success"
        )


def add_force_flags(parser: argparse.ArgumentParser, *, force: str) -> None:
    """`--force` (what it does here is `force`) and `--force-ignores-success`."""
    parser.add_argument("--force", action="store_true", help=force)
    parser.add_argument(
        "--force-ignores-success", action="store_true", help="with --force: done records too"
    )


def add_assignments(parser: argparse.ArgumentParser, flag: str, *, help: str) -> None:
    """A repeatable `flag KEY=VALUE` option, collected with `assignments`."""
    parser.add_argument(
        flag,
        type=assignment,
        action="append",
        metavar="KEY=VALUE",
        help=f"{help} (VALUE is JSON when it parses); repeatable",
    )
