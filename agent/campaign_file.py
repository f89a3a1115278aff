"""Reading what `farmhand submit` takes: a tasklist (one shell command per line) or a TOML
campaign file."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from farmhand.agent import wire

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class CampaignFileError(ValueError):
    """The file cannot be submitted; the message names the file and the problem."""


@dataclass
class CampaignFile:
    """A parsed submission: the campaign it names (if any) and its records."""

    records: list[wire.RecordSpec]
    name: str | None = None
    software: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


def read(path: Path) -> CampaignFile:
    """Parse `path`: TOML when it ends in `.toml`, a tasklist otherwise."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CampaignFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CampaignFileError(f"{path} is not UTF-8 text") from exc
    parsed = _toml(path, text) if path.suffix == ".toml" else _tasklist(path, text)
    if not parsed.records:
        raise CampaignFileError(
            f"{path} holds no records"
            + (" (only blank lines and # comments)" if path.suffix != ".toml" else "")
        )
    return parsed


def _spec(path: Path, where: str, data: dict[str, Any]) -> wire.RecordSpec:
    try:
        return wire.RecordSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field_name = ".".join(str(p) for p in err["loc"]) or "record"
        raise CampaignFileError(f"{path}: {where}: {field_name}: {err['msg']}") from exc


def _tasklist(path: Path, text: str) -> CampaignFile:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        command = line.strip()
        if not command or command.startswith("#"):
            continue
        records.append(_spec(path, f"line {number}", {"key": str(number), "command": command}))
    return CampaignFile(records=records)


def _toml(path: Path, text: str) -> CampaignFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignFileError(f"{path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"campaign", "records"}
    if unknown:
        raise CampaignFileError(f"{path}: unknown table(s): {', '.join(sorted(unknown))}")
    campaign = data.get("campaign", {})
    if not isinstance(campaign, dict):
        raise CampaignFileError(f"{path}: [campaign] must be a table")
    unknown = set(campaign) - {"name", "software", "defaults"}
    if unknown:
        raise CampaignFileError(f"{path}: [campaign]: unknown key(s): {', '.join(sorted(unknown))}")
    raw_records = data.get("records", [])
    if not isinstance(raw_records, list):
        raise CampaignFileError(f"{path}: records must be an array of tables ([[records]])")
    records = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw_records):
        where = f"records[{index}]"
        if not isinstance(item, dict):
            raise CampaignFileError(f"{path}: {where} must be a table")
        spec = _spec(path, where + (f" ('{item['key']}')" if "key" in item else ""), item)
        if spec.key in seen:
            raise CampaignFileError(
                f"{path}: key '{spec.key}' appears twice (records[{seen[spec.key]}] and {where})"
            )
        seen[spec.key] = index
        records.append(spec)
    defaults = campaign.get("defaults", {})
    if not isinstance(defaults, dict):
        raise CampaignFileError(f"{path}: [campaign.defaults] must be a table")
    return CampaignFile(
        records=records,
        name=campaign.get("name"),
        software=campaign.get("software"),
        defaults=defaults,
    )
