"""`farmhand export`, `import`, `backup` and `restore`: moving campaigns between servers,
and copying a whole server."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from farmhand.cli import refs
from farmhand.cli.base import CliError, connect
from farmhand.cli.files import backups as backup_files
from farmhand.cli.files import bundles as bundle_files
from farmhand.client import FarmhandClient

__all__ = ["add_parsers", "cmd_backup", "cmd_export", "cmd_import", "cmd_restore", "import_file"]


def cmd_export(args: argparse.Namespace) -> int:
    """Write a campaign, its records, runs and snapshots to a bundle tar."""
    client = connect(args)
    campaign = refs.find_campaign(client, args.campaign)
    out = _output(args.output, "bundle")
    try:
        done = bundle_files.write_bundle(client, campaign.id, out)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from exc
    label = f"{done.campaign.name}:{done.campaign.version}"
    print(
        f"exported {label}: {done.records} records, {done.snapshots} snapshots "
        f"({done.bytes} bytes) to {out}"
    )
    return 0


def _output(text: str, what: str) -> Path:
    """The `-o` file: not a directory, in a directory that exists."""
    out = Path(text)
    if out.is_dir():
        raise CliError(f"{out} is a directory: give the {what}'s file name with -o")
    if not out.absolute().parent.is_dir():
        raise CliError(f"{out.parent} does not exist: create it first, or write elsewhere")
    return out


def import_file(client: FarmhandClient, path: Path) -> dict:
    """Upload a bundle's missing snapshots, then merge its records chunk by chunk; returns
    the totals (`created`, `merged`, `unchanged`, `conflicts`, `notes`, snapshot counts)."""
    total: dict = {
        "campaign": None,
        "campaign_created": False,
        "created": 0,
        "merged": 0,
        "unchanged": 0,
        "conflicts": [],
        "notes": [],
        "snapshots_uploaded": 0,
        "snapshots_present": 0,
    }
    try:
        with bundle_files.BundleReader.open(path) as bundle:
            total["campaign"] = f"{bundle.campaign.name}:{bundle.campaign.version}"
            for line in bundle.lines:  # every record valid before anything is sent
                bundle.record(line)
            _upload_snapshots(client, bundle, total)
            ordered = bundle_files.parents_first(bundle.lines)
            for chunk in bundle_files.chunks(ordered) if ordered else [[]]:
                records = [bundle.record(line) for line in chunk]
                answer = client.import_bundle(bundle.campaign, records)
                total["campaign_created"] |= answer.campaign_created
                for name in ("created", "merged", "unchanged"):
                    total[name] += getattr(answer, name)
                total["conflicts"] += [c.model_dump() for c in answer.conflicts]
                total["notes"] += [n for n in answer.notes if n not in total["notes"]]
    except bundle_files.BundleError as exc:
        raise CliError(str(exc)) from exc
    return total


def _upload_snapshots(
    client: FarmhandClient, bundle: bundle_files.BundleReader, total: dict
) -> None:
    """Send the snapshots the server lacks (asked one by one with HEAD), each once."""
    with tempfile.TemporaryDirectory(prefix="farmhand-import-") as scratch:
        blob = Path(scratch) / "blob"
        for sha in bundle.snapshots:
            if client.has_snapshot(sha):
                total["snapshots_present"] += 1
                continue
            if bundle.extract_snapshot(sha, blob) is None:
                raise CliError(
                    f"{bundle.path} lists snapshot {sha} but does not hold it, and the server "
                    "has no copy"
                )
            client.upload_snapshot(blob, sha256=sha, skip_if_present=False)
            blob.unlink()
            total["snapshots_uploaded"] += 1


def cmd_import(args: argparse.Namespace) -> int:
    """Merge a bundle into the server."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no bundle file {path}")
    total = import_file(connect(args), path)
    if args.json:
        print(json.dumps(total, indent=2))
        return 0
    made = " (created here)" if total["campaign_created"] else ""
    print(
        f"imported {total['campaign']}{made} from {path}: {total['created']} new, "
        f"{total['merged']} merged (done in the bundle), {total['unchanged']} unchanged; "
        f"snapshots: {total['snapshots_uploaded']} uploaded, "
        f"{total['snapshots_present']} already here"
    )
    for note in total["notes"]:
        print(f"note: {note}", file=sys.stderr)
    for conflict in total["conflicts"]:
        print(
            f"conflict: record '{conflict['key']}' differs in {', '.join(conflict['differs'])}; "
            "left untouched",
            file=sys.stderr,
        )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """Stream a consistent backup of the server (admin token) to a file."""
    out = _output(args.output, "backup")
    try:
        size = connect(args).backup(out)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from exc
    print(f"backup written to {out} ({size} bytes); restore: farmhand restore {out} --data-dir DIR")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Unpack a backup into a new data directory."""
    try:
        done = backup_files.restore(Path(args.file), Path(args.data_dir))
    except backup_files.RestoreError as exc:
        raise CliError(str(exc)) from exc
    print(
        f"restored {done.blobs} blobs and the database into {done.data_dir}; start it with: "
        f"farmhand server --data-dir {done.data_dir}"
    )
    return 0


def add_parsers(
    sub: argparse._SubParsersAction,
    client_opts: argparse.ArgumentParser,
    json_opt: argparse.ArgumentParser,
) -> None:
    """Add `export`, `import`, `backup` and `restore` to the `farmhand` parser."""
    p = sub.add_parser(
        "export",
        parents=[client_opts],
        help="write a campaign with its runs and snapshots to a bundle",
        description="Write a campaign, its records, runs and every snapshot they reference "
        "to a tar that `farmhand import` merges into another server.",
    )
    p.add_argument("--campaign", required=True, help="NAME (latest version), NAME:VERSION or id")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import",
        parents=[client_opts, json_opt],
        help="merge a bundle into the server (idempotent)",
        description="Upload the bundle's missing snapshots, then merge its records: new keys "
        "are added, records done in the bundle complete ours when ours are not done, records "
        "whose spec differs are reported and left untouched. Importing twice changes nothing.",
    )
    p.add_argument("file", help="a bundle written by farmhand export")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "backup",
        parents=[client_opts],
        help="copy a running server (SQLite database and blobs) to a file (admin)",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the backup to write")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore",
        help="unpack a backup into a new data directory",
        description="Unpack a file written by farmhand backup into a new (or empty) data "
        "directory; then start `farmhand server --data-dir DIR` on it.",
    )
    p.add_argument("file", help="a backup written by farmhand backup")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="new data directory")
    p.set_defaults(func=cmd_restore)
