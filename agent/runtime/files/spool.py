"""The outbox's files: one JSON document per report, written so that a crash leaves the
whole entry or none, and read back by the next agent on the same directory.

Layout: `<outbox>/<seq:012d>-<run_id>.json` (written to `.tmp-<name>`, fsynced, renamed, the
directory fsynced) and `<outbox>/archives/<run_id>.tar.gz` (an output archive its entry
names, fsynced before the entry is written).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "ARCHIVES",
    "VERBS",
    "Entry",
    "document",
    "entry_name",
    "fsync_file",
    "load",
    "remove_stray_archives",
    "write_durably",
]

VERBS = ("complete", "fail", "orphan", "release")
ARCHIVES = "archives"
#: Archives no entry names are removed when older than this (a crash before the entry).
STRAY_AGE = 3600.0
_NAME = re.compile(r"^(\d{1,20})-(\d{1,20})\.json$")


@dataclass(order=True)
class Entry:
    """One report waiting to be delivered."""

    seq: int
    run_id: int
    verb: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)  # the wire body as JSON, lease token included
    label: str = field(compare=False)  # "relax-017 (run 42, exit 0, 3.1s)" for logs
    path: Path | None = field(default=None, compare=False)  # None: in memory only
    inherited: bool = field(default=False, compare=False)  # left by an earlier process
    size: int = field(default=0, compare=False)  # bytes of its JSON, to size batches
    archive_file: Path | None = field(default=None, compare=False)  # upload before the report
    remove_after: Path | None = field(default=None, compare=False)  # run dir, once applied
    uploaded: bool = field(default=False, compare=False)  # archive_file is on the server


def entry_name(entry: Entry) -> str:
    """The entry's file name: its sequence number, then its run."""
    return f"{entry.seq:012d}-{entry.run_id}.json"


def document(entry: Entry) -> str:
    """The entry as the JSON text of its file."""
    return json.dumps(
        {
            "run_id": entry.run_id,
            "verb": entry.verb,
            "body": entry.body,
            "label": entry.label,
            "queued_at": datetime.now(timezone.utc).isoformat(),
            "archive_file": None if entry.archive_file is None else str(entry.archive_file),
            "remove_after": None if entry.remove_after is None else str(entry.remove_after),
        }
    )


def load(directory: Path) -> tuple[list[Entry], list[tuple[Path, str]], int]:
    """What an earlier process left in `directory`: its entries (oldest first), the files
    that cannot be read (with why), and the highest sequence number seen."""
    entries: list[Entry] = []
    unreadable: list[tuple[Path, str]] = []
    last_seq = 0
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".tmp-"):
            path.unlink(missing_ok=True)  # a write that crashed before its rename
            continue
        match = _NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        seq, run_id = int(match[1]), int(match[2])
        last_seq = max(last_seq, seq)
        try:
            text = path.read_text()
            found = json.loads(text)
            verb, body = found["verb"], found["body"]
            if verb not in VERBS or not isinstance(body, dict):
                raise ValueError(f"not a report: verb {verb!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            unreadable.append((path, str(exc)))
            continue
        label = str(found.get("label") or f"run {run_id}")
        entry = Entry(seq, run_id, verb, body, label, path, True, len(text))
        entry.archive_file = _optional_path(found.get("archive_file"))
        entry.remove_after = _optional_path(found.get("remove_after"))
        entries.append(entry)
    return sorted(entries), unreadable, last_seq


def remove_stray_archives(directory: Path, named: set[Path | None]) -> None:
    """Remove archives no entry names: a crash between packing and spooling left them
    (half-written ones at once, whole ones once they are too old to be another agent's in
    flight)."""
    now = time.time()
    for path in directory.iterdir():
        try:
            old = now - path.stat().st_mtime > STRAY_AGE
            if path not in named and (path.name.startswith(".tmp-") or old):
                path.unlink()
        except OSError:
            continue


def _optional_path(value: object) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_durably(path: Path, text: str) -> None:
    """Write `text` to `path` so that after a crash it is either complete or absent."""
    temporary = path.with_name(f".tmp-{path.name}")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    try:  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename still happened
    finally:
        os.close(directory)
