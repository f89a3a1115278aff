"""Failed records grouped by cause: a signature of their error and the last line of their
last run's stderr, with numbers, paths and hex ids masked, so thirty records that failed
with `ERROR: lost atoms at step 1234` (each at its own step) make one group, not thirty rows.

A campaign's failed records are read newest first, at most `SCANNED` of them (an index range
of `ix_record_campaign_state`, each with its last run by primary key); the answer says how
many were read of how many failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from farmhand import wire
from farmhand.server.tables import REC, RUN

#: Failed records read per campaign (newest first) to build the groups.
SCANNED = 20_000
#: Records named per group (the rest are counted).
NAMED = 50

_MASKS = (
    (re.compile(r"(?:[A-Za-z]:)?(?:~|\.{1,2})?(?:/[\w.+@%=-]+)+/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def signature(error: str | None, stderr_tail: str | None) -> str:
    """The cause of a failure with what differs between records masked: the error, then
    the last non-empty line of stderr."""
    lines = [line for line in (stderr_tail or "").splitlines() if line.strip()]
    parts = [_mask(error or "no error given")]
    if lines:
        parts.append(_mask(lines[-1]))
    return " | ".join(parts)


def _mask(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text.strip()[:300]


@dataclass
class _Group:
    signature: str
    error: str | None
    tail: str | None
    records: list[wire.FailedRecord] = field(default_factory=list)
    count: int = 0
    next: int | None = None


def groups(
    conn: Connection,
    *,
    campaign_id: int,
    scanned: int = SCANNED,
    cause: str | None = None,
    after: int | None = None,
    named: int = NAMED,
) -> wire.FailureGroups:
    """The campaign's failed records grouped by `signature`, biggest group first, each
    naming its newest `named` records. With `cause`, only that group, its records paged:
    those older than record `after`, and `next` when more follow."""
    failed = REC.c.state == wire.RecordState.failed.value
    total = conn.execute(
        select(func.count()).where(REC.c.campaign_id == campaign_id, failed)
    ).scalar_one()
    rows = _newest_failed(conn, campaign_id, scanned)
    found: dict[str, _Group] = {}
    for record_id, key, error, tail in rows:
        its = signature(error, tail)
        if cause is not None and its != cause:
            continue
        group = found.get(its)
        if group is None:  # the newest failure of each cause is its example
            group = found[its] = _Group(its, error, tail)
        group.count += 1
        if after is not None and record_id >= after:
            continue  # rows come newest (highest id) first: this page starts below `after`
        if len(group.records) < named:
            group.records.append(wire.FailedRecord(id=record_id, key=key))
        elif group.next is None:
            group.next = group.records[-1].id  # one more exists: the page is full
    ordered = sorted(found.values(), key=lambda g: (-g.count, g.signature))
    return wire.FailureGroups(
        campaign_id=campaign_id,
        failed=total,
        scanned=len(rows),
        groups=[
            wire.FailureGroup(
                signature=g.signature,
                count=g.count,
                error=g.error,
                stderr_tail=g.tail,
                records=g.records,
                next=g.next,
            )
            for g in ordered
        ],
    )


def members(conn: Connection, *, campaign_id: int, cause: str) -> list[int]:
    """The ids of the failed records (of those `groups` reads) whose signature is `cause`."""
    rows = _newest_failed(conn, campaign_id, SCANNED)
    return sorted(rid for rid, _, error, tail in rows if signature(error, tail) == cause)


def _newest_failed(conn: Connection, campaign_id: int, limit: int) -> list:
    """(id, key, error, its last run's stderr tail) of the newest failed records."""
    return conn.execute(
        select(REC.c.id, REC.c.key, REC.c.error, RUN.c.stderr_tail)
        .outerjoin(RUN, RUN.c.id == REC.c.run_id)
        .where(REC.c.campaign_id == campaign_id, REC.c.state == wire.RecordState.failed.value)
        .order_by(REC.c.id.desc())
        .limit(limit)
    ).all()
