"""Output archives on their way to the server: the outbox uploads each report's archive just
before the report, under the run's lease.

Small archives (most of them: a short calculation leaves a few kilobytes) whose reports go in
the same delivery travel together in one request (`POST /snapshots/batch`): one request and
one server transaction for up to `BATCH_PARTS` archives instead of one PUT each. Larger ones
stream alone through `PUT /snapshots/{sha256}`. A server that does not know the batch route
(an older one), or that refuses a batch as a whole, gets the archives one by one, which also
finds the one at fault.

An archive refused for good (too big; its lease lost; its bytes spoilt, say by a machine
crash before they reached the disk) is handed to `refused`: the report goes without it and
the run directory stays on the node. What may pass (the server away, 5xx, 401) is raised,
and the whole delivery is tried again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from farmhand import wire
from farmhand.client import ApiError, FarmhandClient
from farmhand.client.retry import is_transient
from farmhand.runtime.files.spool import Entry

__all__ = ["BATCH_BYTES", "BATCH_PARTS", "SMALL", "upload"]

log = logging.getLogger("farmhand.agent")

#: Archives up to this size travel in batches...
SMALL = 1024 * 1024
#: ...of at most this many bytes (under the server's 16 MiB)...
BATCH_BYTES = 8 * 1024 * 1024
#: ...and this many archives.
BATCH_PARTS = 128

#: Called for an archive the server will not take: (entry, why).
Refused = Callable[[Entry, str], None]


@dataclass
class _Ready:
    entry: Entry
    content: Path | bytes  # the archive's file, or its bytes when small
    part: wire.SnapshotPart


def upload(
    client: FarmhandClient, entries: list[Entry], refused: Refused, *, timeout: float
) -> None:
    """Put the archives of `entries` not yet uploaded on the server (marking them
    `uploaded`); raises what should be retried later."""
    small: list[_Ready] = []
    for entry in entries:
        if (entry.archive_file is None and entry.archive_data is None) or entry.uploaded:
            continue
        ready = _ready(entry, refused)
        if ready is None:
            continue
        if ready.part.size > SMALL:
            _one(client, ready, refused)
        else:
            small.append(ready)
    for group in _groups(small):
        if len(group) == 1:
            _one(client, group[0], refused)
        else:
            _batch(client, group, refused, timeout=timeout)


def _ready(entry: Entry, refused: Refused) -> _Ready | None:
    """The entry's archive as a batch part; None (refused) when it cannot be sent."""
    content = entry.archive_data if entry.archive_data is not None else entry.archive_file
    assert content is not None
    sha256, token = entry.body.get("archive"), entry.body.get("token")
    try:
        if not isinstance(sha256, str) or not isinstance(token, str):
            raise ValueError("the report names no archive")
        size = len(content) if isinstance(content, bytes) else content.stat().st_size
        part = wire.SnapshotPart(sha256=sha256, size=size, lease=f"{entry.run_id}:{token}")
    except (OSError, ValueError, ValidationError) as exc:  # gone, unreadable, or misnamed
        refused(entry, str(exc))
        entry.uploaded = True
        return None
    return _Ready(entry, content, part)


def _groups(ready: list[_Ready]) -> list[list[_Ready]]:
    groups: list[list[_Ready]] = []
    size = 0
    for item in ready:
        if not groups or len(groups[-1]) >= BATCH_PARTS or size + item.part.size > BATCH_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += item.part.size
    return groups


def _one(client: FarmhandClient, ready: _Ready, refused: Refused) -> None:
    entry, part = ready.entry, ready.part
    try:
        token = part.lease.partition(":")[2] if part.lease else None
        client.upload_snapshot(ready.content, sha256=part.sha256, run_id=entry.run_id, token=token)
    except ApiError as exc:
        if is_transient(exc) or exc.status == 401:
            raise
        refused(entry, str(exc))
    except (OSError, ValueError) as exc:  # the file is gone or unreadable: report without it
        refused(entry, str(exc))
    entry.uploaded = True


def _batch(
    client: FarmhandClient, group: list[_Ready], refused: Refused, *, timeout: float
) -> None:
    try:
        answers = client.upload_snapshots([(r.content, r.part) for r in group], timeout=timeout)
    except ApiError as exc:
        if is_transient(exc) or exc.status == 401:
            raise
        log.info(
            "a batch of %d archives was refused (%s); sending them one by one", len(group), exc
        )
        answers = None
    except (OSError, ValueError):  # a file vanished or changed since it was sized
        answers = None
    if answers is None:
        for ready in group:
            _one(client, ready, refused)
        return
    for ready, answer in zip(group, answers, strict=True):
        if answer.error is not None:
            refused(ready.entry, answer.error.detail)
        ready.entry.uploaded = True
