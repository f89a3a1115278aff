"""Reading what `farmhand submit` takes: a tasklist (one shell command per line; its keys
come from the commands, `tasklists`) or a TOML campaign file. Which one: `--format`, else a
name ending in `.toml` (any case), else the content (`detect`).

A TOML file has an optional `[campaign]` table (`name`, `software`, `based_on`, `inputs`,
`[campaign.defaults]`), `[[records]]` with `key`, `command` and optionally `params`,
`priority`, `parents`, `dataset`, `tags`, `inputs` and `[records.run_args]`, and `[[sweep]]`
tables: the same fields with `params` a table of lists, an optional `key` template and
`zip`, each expanded into one record per combination (`farmhand.client.sweeps`). A record's
command and key are templates (`{name}`) only when it has params, so a file without params
means what it always meant. The records come first, then the sweeps' in file order. Problems
are reported with the file and the record or sweep named; duplicate keys and a cycle among
the file's own records are caught here, before anything is sent (parents that live only on
the server are checked there).

`inputs = ["relax.py", "pot/Al.eam"]` names files relative to the TOML file; each is staged
at that same relative path in the run directory (the campaign's `inputs` go to every
record). They are read here only to check they exist: `farmhand submit` hashes and uploads
them, and fills in each record's `inputs` (`{path: sha256}`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from farmhand import wire
from farmhand.cli.files import tasklists
from farmhand.client import graph, sweeps

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class CampaignFileError(ValueError):
    """The file cannot be submitted; the message names the file and the problem."""


#: The top-level tables of a campaign file.
TABLES = frozenset({"campaign", "records", "sweep"})
#: A line that opens one of them (`[campaign]`, `[[records]]`, `[campaign.defaults]`, …).
TABLE = re.compile(r"^\s*\[\[?\s*(campaign|records|sweep)\s*(\.[^\]]*)?\]\]?\s*(#.*)?$")
#: The forms `farmhand submit --format` names.
FORMS = ("tasklist", "toml")
#: What a `[[sweep]]` table may hold: a record's fields, and `zip`.
SWEEP_KEYS = frozenset(wire.RecordSpec.model_fields) | {"zip"}


@dataclass
class CampaignFile:
    """A parsed submission: the campaign it names (if any) and its records."""

    records: list[wire.RecordSpec]
    name: str | None = None
    software: str | None = None
    based_on: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    #: record key -> {path in the run directory: the local file}
    inputs: dict[str, dict[str, Path]] = field(default_factory=dict)
    #: `toml` or `tasklist`: what the file was read as
    form: str = "toml"


def input_path(text: Any, where: str) -> str:
    """`text` as a path inside the run directory: relative, `.` and empty parts dropped;
    CampaignFileError for an absolute path, a `..` or anything else a run directory cannot
    hold."""
    if not isinstance(text, str) or not text.strip():
        raise CampaignFileError(f"{where}: an input must be a file path, got {text!r}")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise CampaignFileError(
            f"{where}: input {text!r} is absolute; give it relative to the campaign file"
        )
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise CampaignFileError(
            f"{where}: input {text!r} climbs out with '..'; inputs must lie beside or below "
            "the campaign file"
        )
    try:
        return wire.check_input_path("/".join(parts))
    except ValueError as exc:
        raise CampaignFileError(f"{where}: {exc}") from exc


def input_files(base: Path, paths: Any, where: str) -> dict[str, Path]:
    """`{path in the run directory: local file}` for a TOML `inputs` list, the files taken
    relative to `base`; each must exist and be a regular file."""
    if not isinstance(paths, list):
        raise CampaignFileError(f"{where}: inputs must be a list of file paths")
    found: dict[str, Path] = {}
    for text in paths:
        path = input_path(text, where)
        local = base / path
        if not local.is_file():
            problem = "is a directory; list its files" if local.is_dir() else "does not exist"
            raise CampaignFileError(f"{where}: input '{path}' {problem} ({local})")
        found[path] = local
    return found


def merge_inputs(mine: Mapping[str, Path], more: Mapping[str, Path], where: str) -> dict[str, Path]:
    """`mine` plus `more`; one path naming two different files is a CampaignFileError."""
    merged = dict(mine)
    for path, local in more.items():
        if path in merged and merged[path].resolve() != local.resolve():
            raise CampaignFileError(
                f"{where}: input '{path}' would be both {merged[path]} and {local}"
            )
        merged[path] = local
    return merged


def read(path: Path, form: str | None = None) -> CampaignFile:
    """Parse `path` as `form` (`tasklist` or `toml`), or as `detect` finds it."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CampaignFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CampaignFileError(f"{path} is not UTF-8 text") from exc
    form = form or detect(path, text)
    parsed = _toml(path, text) if form == "toml" else _tasklist(path, text)
    if not parsed.records:
        raise CampaignFileError(
            f"{path} holds no records"
            + (" (only blank lines and # comments)" if form == "tasklist" else "")
        )
    return parsed


def detect(path: Path, text: str) -> str:
    """`toml` for a name ending in `.toml` in any case (`al-md.TOML`), or content that is a
    campaign file: a `[campaign]`, `[[records]]` or `[[sweep]]` table, or TOML holding one;
    `tasklist` otherwise. A file that says TOML but does not parse is then an error naming
    the line, never a list of commands."""
    if path.suffix.lower() == ".toml":
        return "toml"
    if any(TABLE.match(line) for line in text.splitlines()):
        return "toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "tasklist"
    return "toml" if TABLES & set(data) else "tasklist"


def _spec(path: Path, where: str, data: dict[str, Any]) -> wire.RecordSpec:
    try:
        return wire.RecordSpec.model_validate(data)
    except ValidationError as exc:
        raise CampaignFileError(f"{path}: {where}: {_describe(exc.errors()[0])}") from exc


def _describe(err: Any) -> str:
    """One validation error as `field: what is wrong`, in the words of the file's keys."""
    loc = err["loc"]
    if loc[:1] == ("parents",) and len(loc) > 1:
        # A union's error names its branches (parents.0.str, parents.0.int): say it plainly.
        return (
            f"parents[{loc[1]}]: {err['input']!r} is neither a record key (text) "
            "nor a record id (whole number)"
        )
    if err["type"] == "string_pattern_mismatch":
        return f"{'.'.join(map(str, loc))}: {err['input']!r} must be letters, digits and ._-"
    where = ".".join(map(str, loc)) or "record"
    message = err["msg"].removeprefix("Value error, ")
    # A check that names its field itself (`run_args.timeout must be …`) says it once.
    return message if message.startswith(where + ".") else f"{where}: {message}"


def _tasklist(path: Path, text: str) -> CampaignFile:
    records = [_spec(path, f"line {number}", item) for number, item in tasklists.specs(text)]
    return CampaignFile(records=records, form="tasklist")


def _toml(path: Path, text: str) -> CampaignFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignFileError(f"{path} is not valid TOML: {exc}") from exc
    unknown = set(data) - TABLES
    if unknown:
        raise CampaignFileError(f"{path}: unknown table(s): {', '.join(sorted(unknown))}")
    campaign = data.get("campaign", {})
    if not isinstance(campaign, dict):
        raise CampaignFileError(f"{path}: [campaign] must be a table")
    unknown = set(campaign) - {"name", "software", "based_on", "defaults", "inputs"}
    if unknown:
        raise CampaignFileError(f"{path}: [campaign]: unknown key(s): {', '.join(sorted(unknown))}")
    raw_records = data.get("records", [])
    if not isinstance(raw_records, list):
        raise CampaignFileError(f"{path}: records must be an array of tables ([[records]])")
    raw_sweeps = data.get("sweep", [])
    if not isinstance(raw_sweeps, list):
        raise CampaignFileError(f"{path}: sweep must be an array of tables ([[sweep]])")
    shared = input_files(path.parent, campaign.get("inputs", []), f"{path}: [campaign]")
    records, inputs = _gather(path, raw_records, raw_sweeps, shared)
    _check_parents(path, records)
    defaults = campaign.get("defaults", {})
    if not isinstance(defaults, dict):
        raise CampaignFileError(f"{path}: [campaign.defaults] must be a table")
    try:
        wire.check_run_args(defaults)
    except ValueError as exc:
        raise CampaignFileError(f"{path}: [campaign.defaults]: {exc}") from exc
    for name in ("name", "software", "based_on"):
        if not isinstance(campaign.get(name, ""), str):
            raise CampaignFileError(f"{path}: [campaign]: {name} must be a string")
    return CampaignFile(
        records=records,
        name=campaign.get("name"),
        software=campaign.get("software"),
        based_on=campaign.get("based_on"),
        defaults=defaults,
        inputs=inputs,
    )


def _gather(
    path: Path, raw_records: list[Any], raw_sweeps: list[Any], shared: dict[str, Path]
) -> tuple[list[wire.RecordSpec], dict[str, dict[str, Path]]]:
    """The records of the `[[records]]` and then the `[[sweep]]` tables, and each one's input
    files (the campaign's `shared` ones and its own); a key may appear only once in all."""
    records: list[wire.RecordSpec] = []
    inputs: dict[str, dict[str, Path]] = {}
    seen: dict[str, str] = {}

    def add(specs: list[wire.RecordSpec], own: dict[str, Path], where: str, short: str) -> None:
        files = merge_inputs(shared, own, f"{path}: {where}") if shared or own else {}
        for spec in specs:
            if spec.key in seen:
                raise CampaignFileError(
                    f"{path}: key '{spec.key}' appears twice ({seen[spec.key]} and {where})"
                )
            seen[spec.key] = short
            records.append(spec)
            if files:
                inputs[spec.key] = files

    for index, item in enumerate(raw_records):
        short = f"records[{index}]"
        if not isinstance(item, dict):
            raise CampaignFileError(f"{path}: {short} must be a table")
        where = short + (f" ('{item['key']}')" if "key" in item else "")
        item = dict(item)
        own = input_files(path.parent, item.pop("inputs", []), f"{path}: {where}")
        add([_spec(path, where, _templated(path, where, item))], own, where, short)
    for number, item in enumerate(raw_sweeps, start=1):
        where = _sweep_name(number, item)
        if not isinstance(item, dict):
            raise CampaignFileError(f"{path}: {where} must be a table")
        item = dict(item)
        own = input_files(path.parent, item.pop("inputs", []), f"{path}: {where}")
        add(_sweep(path, where, item), own, where, where)
    return records, inputs


def _templated(path: Path, where: str, item: dict[str, Any]) -> dict[str, Any]:
    """A `[[records]]` entry with its command and key rendered over its params (when it has
    any: without params nothing is a template)."""
    params = item.get("params")
    if not isinstance(params, dict) or not params:
        return item  # absent or empty: not templated; not a table: the spec says so
    for name, value in params.items():
        if isinstance(value, list):
            raise CampaignFileError(
                f"{path}: {where}: params: {name} is a list; a record takes one value per "
                "param ([[sweep]] takes lists)"
            )
    try:
        wire.check_params(params)
        rendered = {
            field: sweeps.render(item[field], params)
            for field in ("key", "command")
            if isinstance(item.get(field), str)
        }
    except ValueError as exc:
        raise CampaignFileError(f"{path}: {where}: {exc}") from exc
    return {**item, **rendered}


def _sweep_name(number: int, item: Any) -> str:
    """`sweep 2 (command 'lmp -var T {T} …')`: a sweep as errors name it."""
    command = item.get("command") if isinstance(item, dict) else None
    if not isinstance(command, str):
        return f"sweep {number}"
    shown = command if len(command) <= 40 else command[:40] + "…"
    return f"sweep {number} (command '{shown}')"


def _sweep(path: Path, where: str, item: dict[str, Any]) -> list[wire.RecordSpec]:
    """The records of one `[[sweep]]` table (its `inputs` already taken out)."""
    unknown = set(item) - SWEEP_KEYS
    if unknown:
        raise CampaignFileError(f"{path}: {where}: unknown key(s): {', '.join(sorted(unknown))}")
    command = item.pop("command", None)
    if not isinstance(command, str):
        raise CampaignFileError(f"{path}: {where}: command: a sweep needs a command (a string)")
    lists = item.pop("params", None)
    if not isinstance(lists, dict) or not lists:
        raise CampaignFileError(
            f"{path}: {where}: params: a sweep needs a table of lists, "
            "e.g. params = { T = [300, 600] }"
        )
    zip_lists = item.pop("zip", False)
    if not isinstance(zip_lists, bool):
        raise CampaignFileError(f"{path}: {where}: zip must be true or false")
    key = item.pop("key", None)
    if key is not None and not isinstance(key, str):
        raise CampaignFileError(f"{path}: {where}: key must be a string (a template)")
    try:
        return sweeps.sweep_specs(command, lists, key=key, zip_lists=zip_lists, **item)
    except ValidationError as exc:
        raise CampaignFileError(f"{path}: {where}: {_describe(exc.errors()[0])}") from exc
    except ValueError as exc:
        raise CampaignFileError(f"{path}: {where}: {exc}") from exc


def _check_parents(path: Path, records: list[wire.RecordSpec]) -> None:
    """Refuse a record that is its own parent, or a cycle among the file's records."""
    for spec in records:
        if spec.key in spec.parents:
            raise CampaignFileError(f"{path}: record '{spec.key}' lists itself as a parent")
    cycle = graph.on_cycles(records)
    if cycle:
        names = ", ".join(f"'{key}'" for key in cycle[:20])
        raise CampaignFileError(f"{path}: the parents form a cycle through records {names}")
