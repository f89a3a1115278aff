"""`farmhand campaign new` and `farmhand submit`: putting work on the server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

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
from farmhand.cli.campaigns import archive
from farmhand.cli.files import campaigns as campaign_file
from farmhand.cli.files import tasklists
from farmhand.client import FarmhandClient
from farmhand.client.transfer import sha256_file

__all__ = ["add_parsers", "cmd_campaign_new", "cmd_submit", "describe_submission", "label"]


def label(campaign: wire.Campaign) -> str:
    """`relax:3`: how a campaign is named on the command line."""
    return f"{campaign.name}:{campaign.version}"


def cmd_campaign_new(args: argparse.Namespace) -> int:
    """Create the next version of a campaign and print its NAME:VERSION."""
    client = connect(args)
    campaign = client.create_campaign(
        args.name,
        software=args.software,
        defaults=assignments(args.default),
        based_on=args.based_on,
    )
    if args.json:
        output.dump(campaign)
    else:
        print(label(campaign))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a tasklist or TOML campaign file (with --dry-run: only show what it holds).

    Nothing is created until everything is valid: the whole file is read and checked here
    (run_args, templates, parents among its records, input files), then the server checks the
    request in the transaction that creates the records (and the campaign, when it is new).
    Uploads, and the requests after the first of a very large file, are not part of that
    transaction: when there are any, the server checks the whole submission in a dry run
    first, and only then are inputs uploaded and records sent.
    """
    check_force(args)
    try:
        parsed = campaign_file.read(Path(args.file), args.format)
    except campaign_file.CampaignFileError as exc:
        raise CliError(str(exc)) from exc
    ref = args.campaign or parsed.name
    if not ref:
        raise CliError(f"{args.file} names no campaign: pass --campaign NAME")
    files = _inputs(parsed, args.input or [])
    digests = _hash(files)
    records = _with_inputs(parsed.records, files, digests)
    if args.dry_run:
        _show_dry_run(ref, records, digests, as_json=args.json)
        return 0
    client = connect(args)
    target = _target(client, ref, parsed)
    if isinstance(target, wire.Campaign) and parsed.form == "tasklist":
        _refuse_line_numbered(client, target)
    into = target.id if isinstance(target, wire.Campaign) else target
    flags = {"force": args.force, "force_ignores_success": args.force_ignores_success}
    if digests or len(records) > wire.MAX_RECORDS_PER_REQUEST:
        client.submit(into, records, dry_run=True, **flags)
    uploaded = _upload(client, digests)
    if uploaded:
        print(f"uploaded {uploaded} input file(s)", file=sys.stderr)
    answer = client.submit(into, records, **flags)
    if isinstance(target, wire.Campaign):
        campaign = target
    else:
        assert answer.created_campaign is not None  # the server created it
        campaign = client.campaign(answer.created_campaign)
        print(f"created campaign {label(campaign)}", file=sys.stderr)
    if args.json:
        body = {"campaign": campaign.model_dump(mode="json"), **answer.model_dump(mode="json")}
        print(json.dumps(body, indent=2))
    else:
        print(describe_submission(campaign, answer, force=args.force))
    return 0


#: How many records `submit --dry-run` shows.
SHOWN = 5


def _show_dry_run(
    ref: str, records: list[wire.RecordSpec], digests: dict[Path, str], *, as_json: bool
) -> None:
    """Print what `submit` would send, without a server: the campaign, the count and the
    first SHOWN keys with their commands (with --json: every record)."""
    if as_json:
        body = {
            "dry_run": True,
            "campaign": ref,
            "count": len(records),
            "input_files": len(set(digests.values())),
            "records": [spec.model_dump(mode="json") for spec in records],
        }
        print(json.dumps(body, indent=2))
        return
    files = len(set(digests.values()))
    line = f"dry run: would submit {len(records)} records to campaign {ref}"
    print(line + (f" with {files} distinct input file(s)" if files else "") + "; nothing sent")
    shown = records[:SHOWN]
    width = max(len(spec.key) for spec in shown)
    for spec in shown:
        first, *more = spec.command.strip().splitlines()
        print(f"  {spec.key:<{width}}  {first}" + (" …" if more else ""))
    if len(records) > SHOWN:
        print(f"  … and {len(records) - SHOWN} more")


def _inputs(parsed: campaign_file.CampaignFile, flags: list[str]) -> dict[str, dict[str, Path]]:
    """Each record's input files: the campaign file's, plus every `--input FILE` (placed in
    the run directory under its file name)."""
    extra: dict[str, Path] = {}
    for text in flags:
        local = Path(text)
        if not local.is_file():
            problem = "is a directory" if local.is_dir() else "does not exist"
            raise CliError(f"--input {text}: {problem}; give a file")
        if local.name in extra and extra[local.name].resolve() != local.resolve():
            raise CliError(
                f"--input {extra[local.name]} and --input {text} would both be '{local.name}' "
                "in the run directory"
            )
        extra[local.name] = local
    files = {}
    for spec in parsed.records:
        mine = parsed.inputs.get(spec.key, {})
        try:
            files[spec.key] = campaign_file.merge_inputs(mine, extra, f"record '{spec.key}'")
        except campaign_file.CampaignFileError as exc:
            raise CliError(str(exc)) from exc
    return files


def _hash(files: dict[str, dict[str, Path]]) -> dict[Path, str]:
    """The sha256 of every distinct input file, each read once."""
    digests: dict[Path, str] = {}
    for table in files.values():
        for local in table.values():
            key = local.resolve()
            if key not in digests:
                try:
                    digests[key] = sha256_file(key)
                except OSError as exc:
                    raise CliError(f"cannot read input {local}: {exc.strerror or exc}") from exc
    return digests


def _with_inputs(
    records: list[wire.RecordSpec], files: dict[str, dict[str, Path]], digests: dict[Path, str]
) -> list[wire.RecordSpec]:
    """The records with `inputs` ({path in the run directory: sha256}) filled in."""
    out = []
    for spec in records:
        table = files.get(spec.key)
        if not table:
            out.append(spec)
            continue
        named = {**spec.inputs, **{path: digests[local.resolve()] for path, local in table.items()}}
        try:
            named = wire.check_inputs(named)
        except ValueError as exc:
            raise CliError(f"record '{spec.key}': {exc}") from exc
        out.append(spec.model_copy(update={"inputs": named}))
    return out


def _upload(client: FarmhandClient, digests: dict[Path, str]) -> int:
    """Upload each distinct input once (the server is asked first and keeps what it has);
    returns how many were sent."""
    sent = 0
    by_sha = {sha: local for local, sha in digests.items()}
    for sha, local in by_sha.items():
        if client.has_snapshot(sha):
            continue
        client.upload_snapshot(local, sha256=sha, skip_if_present=False)
        sent += 1
    return sent


def _target(
    client: FarmhandClient, ref: str, parsed: campaign_file.CampaignFile
) -> wire.Campaign | wire.CampaignCreate:
    """The campaign `ref` names: `NAME` is its latest version, or, when there is none, a new
    one (with the file's software, based_on and defaults) that the submission creates;
    `NAME:VERSION` or an id must exist."""
    if ref.isdigit() or refs.split_campaign(ref)[1] is not None:
        return refs.find_campaign(client, ref)
    versions = client.campaigns(name=ref)
    if not versions:
        try:
            return wire.CampaignCreate(
                name=ref,
                software=parsed.software,
                defaults=parsed.defaults,
                based_on=parsed.based_on,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise CliError(f"campaign '{ref}': {where}: {first['msg']}") from exc
    campaign = max(versions, key=lambda c: c.version)
    differs = [
        name
        for name, mine, theirs in (
            ("software", parsed.software, campaign.software),
            ("defaults", parsed.defaults or None, campaign.defaults or None),
        )
        if mine is not None and mine != theirs
    ]
    if differs:
        # The file's campaign settings only shape a new campaign; say so rather than let a
        # changed default silently not apply.
        print(
            f"note: {label(campaign)} exists; the file's {' and '.join(differs)} apply only to "
            f"a new version: farmhand campaign new {campaign.name}",
            file=sys.stderr,
        )
    return campaign


def _refuse_line_numbered(client: FarmhandClient, campaign: wire.Campaign) -> None:
    """CliError when `campaign` holds tasklist records keyed by line number (before keys came
    from commands): this tasklist would add every command again under its new key."""
    if not any(campaign.counts.values()):
        return
    first = client.records_page(campaign_id=campaign.id, limit=1).items
    if first and tasklists.looks_line_numbered(first[0]):
        raise CliError(
            f"{label(campaign)} holds records keyed by their line number (e.g. '{first[0].key}'), "
            "from a tasklist submitted before keys came from the commands; this file's keys "
            f"({tasklists.PREFIX}…) match none of them, so every command would be added again. "
            f"Submit it to a new version: farmhand campaign new {campaign.name}, then submit "
            f"again with --campaign {campaign.name}"
        )


def describe_submission(
    campaign: wire.Campaign, answer: wire.RecordsCreated, *, force: bool
) -> str:
    """`submitted 3 records to relax:2; replaced 1 whose spec changed (queued again): b;
    skipped 2 whose keys already exist`, and a line naming the skipped records that differ."""
    line = f"submitted {answer.created} records to {label(campaign)}"
    if answer.replaced:
        line += f"; replaced {answer.replaced} whose spec changed (queued again): "
        line += _listed(answer.replaced_keys, answer.replaced)
    if answer.skipped:
        line += f"; skipped {answer.skipped} whose keys already exist"
        unchanged = answer.skipped - answer.differing
        if force and unchanged:
            line += f" ({unchanged} unchanged: farmhand retry reruns records)"
    if answer.differing:
        shown = [f"{d.key} ({', '.join(d.fields)})" for d in answer.differs]
        hint = (
            "done: --force --force-ignores-success replaces them"
            if force
            else "--force replaces them; done ones with --force-ignores-success too"
        )
        line += (
            f"\n{answer.differing} of the skipped differ from what is stored: "
            f"{_listed(shown, answer.differing)} ({hint})"
        )
    return line


def _listed(names: list[str], total: int, shown: int = 10) -> str:
    """`a, b, c and 7 more`: the first `shown` of `total` names."""
    more = total - min(shown, len(names))
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def add_parsers(
    sub: argparse._SubParsersAction,
    client_opts: argparse.ArgumentParser,
    json_opt: argparse.ArgumentParser,
) -> None:
    """Add `campaign new` and `submit` to the `farmhand` parser."""
    p = sub.add_parser("campaign", help="manage campaigns")
    csub = p.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    c = csub.add_parser(
        "new",
        parents=[client_opts, json_opt],
        help="create the next version of a campaign",
        description="Create NAME's next version (1 for a new name) and print NAME:VERSION.",
    )
    c.add_argument("name", help="campaign name (letters, digits, ._-)")
    c.add_argument("--software", metavar="TAG", help="software tag, e.g. lammps-2023")
    c.add_argument(
        "--based-on",
        metavar="NAME[:VERSION]",
        help="the campaign this one follows (NAME alone: its latest version)",
    )
    add_assignments(c, "--default", help="a run_arg every record inherits")
    c.set_defaults(func=cmd_campaign_new)
    archive.add_actions(csub, client_opts, json_opt)

    p = sub.add_parser(
        "submit", parents=[client_opts, json_opt], help="submit a tasklist or TOML campaign file"
    )
    p.add_argument("file", help="tasklist (one command per line) or campaign .toml")
    p.add_argument(
        "--format",
        choices=campaign_file.FORMS,
        help="read FILE as this (default: TOML for a name ending in .toml, any case, or for "
        "content with [campaign], [[records]] or [[sweep]] tables; else a tasklist)",
    )
    p.add_argument(
        "--campaign",
        metavar="NAME[:VERSION]",
        help="campaign NAME (latest version, created if missing) or NAME:VERSION",
    )
    p.add_argument(
        "--input",
        action="append",
        metavar="FILE",
        help="a file staged into every record's run directory under its name; repeatable",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="read and expand the file, print what would be submitted; send nothing",
    )
    add_force_flags(
        p, force="existing keys whose spec changed get the new spec and are queued again"
    )
    p.set_defaults(func=cmd_submit)
