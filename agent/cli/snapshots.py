"""`farmhand get archive|snapshot` and `farmhand ls snapshots`: content-addressed files."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from farmhand import wire
from farmhand.cli import refs
from farmhand.cli.base import CliError, connect
from farmhand.client import FarmhandClient
from farmhand.runtime.files import rundirs as staging

__all__ = ["COLUMNS", "add_parsers", "cmd_get_archive", "cmd_get_snapshot", "list_snapshots"]

COLUMNS = ["sha256", "size", "created_at", "references"]


def _check_sha(text: str) -> str:
    if not re.match(wire.SHA256_PATTERN, text):
        raise CliError(f"{text!r} is not a snapshot name (64 lowercase hex digits of a sha256)")
    return text


def cmd_get_snapshot(args: argparse.Namespace) -> int:
    """Download one snapshot by its sha256."""
    sha = _check_sha(args.sha256)
    out = Path(args.output or sha)
    connect(args).download_snapshot(sha, out)
    print(f"snapshot {sha} written to {out}")
    return 0


def cmd_get_archive(args: argparse.Namespace) -> int:
    """Download the output archive of a record's latest attempt that has one."""
    client = connect(args)
    (record_id,) = refs.find_record_ids(client, [args.record], args.campaign)
    record = client.record(record_id)
    run = next((r for r in reversed(record.runs or []) if r.archive), None)
    if run is None:
        tried = len(record.runs or [])
        raise CliError(
            f"record '{record.key}' has no output archive yet ({tried} attempt(s), state "
            f"{record.state.value})"
        )
    assert run.archive is not None
    out = Path(args.output or f"{staging.safe_name(record.key)}-run{run.id}.tar.gz")
    client.download_snapshot(run.archive, out)
    print(f"archive of '{record.key}' (run {run.id}, attempt {run.attempt}) written to {out}")
    return 0


def list_snapshots(client: FarmhandClient, limit: int) -> list[wire.Snapshot]:
    """Snapshots for `farmhand ls snapshots` in sha256 order, at most `limit`."""
    items = []
    for snapshot in client.snapshots():
        items.append(snapshot)
        if len(items) >= limit:
            break
    return items


def add_parsers(
    sub: argparse._SubParsersAction,
    client_opts: argparse.ArgumentParser,
    json_opt: argparse.ArgumentParser,
) -> None:
    """Add `get archive` and `get snapshot` to the `farmhand` parser."""
    p = sub.add_parser("get", help="download an archive or a snapshot")
    gsub = p.add_subparsers(dest="get_command", required=True, metavar="WHAT")
    g = gsub.add_parser(
        "archive",
        parents=[client_opts],
        help="the output archive (tar.gz) of a record's latest attempt",
    )
    g.add_argument("record", help="record id or key")
    g.add_argument("--campaign", help="campaign the key is in")
    g.add_argument("-o", "--output", metavar="FILE", help="default: KEY-runID.tar.gz")
    g.set_defaults(func=cmd_get_archive)
    g = gsub.add_parser("snapshot", parents=[client_opts], help="a snapshot by its sha256")
    g.add_argument("sha256", help="the snapshot's sha256")
    g.add_argument("-o", "--output", metavar="FILE", help="default: the sha256")
    g.set_defaults(func=cmd_get_snapshot)
