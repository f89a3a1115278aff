"""The outbox's files: reports as JSON documents, written so that a crash leaves the whole
file or none, and read back by the next agent on the same directory.

Layout: `<outbox>/<seq:012d>-<run_id>.json` (one report), `<outbox>/<first:012d>-<last:012d>
.group.json` (reports that arrived together, made durable with one fsync: group commit),
each written to `.tmp-<name>`, fsynced, renamed, the directory fsynced; and
`<outbox>/archives/<run_id>.tar.gz` (an output archive its entry names; not fsynced: one that
a machine crash spoilt is found at delivery, and the report goes without it while the run
directory stays). A small archive has no file: its bytes are in its entry (`archive_data`,
base64), made durable with it.
"""

from __future__ import annotations

import base64
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
    "group_document",
    "group_name",
    "join_group",
    "load",
    "remove_stray_archives",
    "write_durably",
]

VERBS = ("complete", "fail", "orphan", "release")
ARCHIVES = "archives"
#: Archives no entry names are removed when older than this (a crash before the entry).
STRAY_AGE = 3600.0
_NAME = re.compile(r"^(\d{1,20})-(\d{1,20})\.json$")  # seq-run_id.json: one entry
_GROUP_NAME = re.compile(r"^(\d{1,20})-(\d{1,20})\.group\.json$")  # first-last seq


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
    archive_data: bytes | None = field(default=None, compare=False)  # or these bytes
    remove_after: Path | None = field(default=None, compare=False)  # run dir, once applied
    uploaded: bool = field(default=False, compare=False)  # archive_file is on the server
    queued_at: float = field(default=0.0, compare=False)  # monotonic; 0: an earlier process's


def entry_name(entry: Entry) -> str:
    """The file name of an entry written alone: its sequence number, then its run."""
    return f"{entry.seq:012d}-{entry.run_id}.json"


def group_name(entries: list[Entry]) -> str:
    """The file name of entries written together: their first and last sequence numbers."""
    return f"{entries[0].seq:012d}-{entries[-1].seq:012d}.group.json"


def _fields(entry: Entry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "run_id": entry.run_id,
        "verb": entry.verb,
        "body": entry.body,
        "label": entry.label,
        "queued_at": datetime.now(timezone.utc).isoformat(),
        "archive_file": None if entry.archive_file is None else str(entry.archive_file),
        "archive_data": (
            None if entry.archive_data is None else base64.b64encode(entry.archive_data).decode()
        ),
        "remove_after": None if entry.remove_after is None else str(entry.remove_after),
    }


def document(entry: Entry) -> str:
    """The entry as the JSON text of its own file."""
    return json.dumps(_fields(entry))


def group_document(entries: list[Entry]) -> str:
    """Entries written together (one fsync for all) as the JSON text of their file."""
    return join_group([document(entry) for entry in entries])


def join_group(documents: list[str]) -> str:
    """`group_document` of entries already made into their `document` texts (the same
    text `json.dumps` gives the whole)."""
    return '{"entries": [' + ", ".join(documents) + "]}"


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
        match = _NAME.match(path.name) or _GROUP_NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        grouped = match.re is _GROUP_NAME
        last_seq = max(last_seq, int(match[2] if grouped else match[1]))
        try:
            found = json.loads(path.read_text())
            if grouped:
                found = found["entries"]
            else:  # its name says which: files older than group commit have no "seq"
                found = [{**found, "seq": int(match[1]), "run_id": int(match[2])}]
            entries.extend([_entry(item, path) for item in found])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            unreadable.append((path, str(exc)))
            continue
    return sorted(entries), unreadable, last_seq


def _entry(found: dict[str, Any], path: Path) -> Entry:
    verb, body = found["verb"], found["body"]
    if verb not in VERBS or not isinstance(body, dict):
        raise ValueError(f"not a report: verb {verb!r}")
    seq, run_id = int(found["seq"]), int(found["run_id"])
    label = str(found.get("label") or f"run {run_id}")
    entry = Entry(seq, run_id, verb, body, label, path, True, len(json.dumps(found)))
    entry.archive_file = _optional_path(found.get("archive_file"))
    data = found.get("archive_data")
    if data is not None:
        if not isinstance(data, str):
            raise ValueError("archive_data is not base64 text")
        entry.archive_data = base64.b64decode(data, validate=True)  # binascii.Error: ValueError
    entry.remove_after = _optional_path(found.get("remove_after"))
    return entry


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
