"""Tasklists: one shell command per line, `#` comments and blank lines ignored.

A command's record key comes from its text, not its line: `t-` and the first 12 hex digits of
the sha256 of the command (the line without its surrounding blanks); the second and later
copies of the same command in one file get `-2`, `-3`, … in the order they appear. So comment
lines, blank lines and reordering keep every key, and a resubmission of an edited list skips
exactly the commands it already had; a changed command is a new record (its old key is not in
the file any more).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from farmhand import wire

__all__ = ["PREFIX", "key_of", "looks_line_numbered", "specs"]

#: What every tasklist key starts with.
PREFIX = "t-"
#: Hex digits of the command's sha256 in its key: 48 bits, so two different commands share
#: one only about once in 500 lists of a million lines (then the later one gets `-2`).
DIGITS = 12


def key_of(command: str, seen: Counter[str]) -> str:
    """The key of `command` (its text stripped), counting its copies so far in `seen`."""
    base = PREFIX + hashlib.sha256(command.encode()).hexdigest()[:DIGITS]
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def specs(text: str) -> list[tuple[int, dict[str, Any]]]:
    """`(line number, {"key", "command"})` for each command line of a tasklist."""
    seen: Counter[str] = Counter()
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        command = line.strip()
        if not command or command.startswith("#"):
            continue
        found.append((number, {"key": key_of(command, seen), "command": command}))
    return found


def looks_line_numbered(record: wire.Record) -> bool:
    """Whether `record` looks like one a tasklist made before keys came from commands: its
    key is the number of its line."""
    return record.key.isdigit()
