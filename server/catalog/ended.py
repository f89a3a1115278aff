"""What ended since a cursor: the records of a campaign that reached done, failed, cancelled
or orphaned after a reader last looked, without rescanning the campaign.

A record that ends has `end_seq` NULL; the partial index `ix_record_unstamped` holds exactly
those. A reader first stamps them with the campaign's next generation (`stamp`, a short write
transaction, only when there is something to stamp), then reads `(end_seq, id)` after its
cursor through the partial index `ix_record_campaign_end` (`read`). Stamps are taken one at
a time per campaign (PostgreSQL: a transaction-scoped advisory lock; SQLite: one writer), so
a generation is
visible whole and only after every earlier one: a cursor never passes a record it has not
seen. A record that leaves its end (retry, forced submission, a parent retried) gets NULL
again, and is stamped anew (a later generation) when it ends again.

Cursors are `GENERATION:ID` strings (`0:0`: from the start). Each poll reads the records
stamped since, plus the few to stamp — never the rest of the campaign.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand import wire
from farmhand.server import tables
from farmhand.server.db import connection_of, literal_in
from farmhand.server.errors import Invalid
from farmhand.server.tables import CAMPAIGN, REC

__all__ = ["ENDED", "finished", "parse_cursor", "read", "stamp", "unstamped"]

S = wire.RecordState
#: States a record ends in (the partial index's states).
ENDED = (S.done, S.failed, S.cancelled, S.orphaned)


def parse_cursor(text: str | None) -> tuple[int, int]:
    """`GENERATION:ID` → (generation, id); None → the start. 422 naming a malformed one."""
    if not text:
        return 0, 0
    generation, colon, rid = text.partition(":")
    if not colon or not generation.isdigit() or not rid.isdigit():
        raise Invalid(f"cursor {text!r} is not GENERATION:ID as an earlier answer gave it")
    return int(generation), int(rid)


def _unstamped_sql(session: Session, head: str) -> str:
    """`head` over the campaign's ended, unstamped records, through the partial index
    `ix_record_unstamped` (named on SQLite: without statistics it would take
    (campaign_id, state) and read every ended record of the campaign)."""
    sqlite = connection_of(session).dialect.name == "sqlite"
    hint = " INDEXED BY ix_record_unstamped" if sqlite else ""
    return (
        f"{head.format(record='record' + hint)} WHERE campaign_id = :campaign "
        f"AND end_seq IS NULL AND {tables.ENDED}"
    )


def unstamped(session: Session, campaign_id: int) -> bool:
    """Whether records of the campaign ended since the last stamp. A count, not `LIMIT 1`:
    the index holds only those records, and with a LIMIT PostgreSQL's estimate (state and
    end_seq taken as independent) favours scanning the table for a first match."""
    found = session.execute(
        text(_unstamped_sql(session, "SELECT count(*) FROM {record}")),
        {"campaign": campaign_id},
    )
    return bool(found.scalar())


def stamp(session: Session, campaign_id: int) -> int:
    """Stamp the campaign's ended, unstamped records with its next generation; how many."""
    conn: Connection = connection_of(session)
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(f"farmhand-ended {campaign_id}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))
    # Records first, then the campaign row, like reports (no lock cycle with them).
    generation = (
        session.execute(select(CAMPAIGN.c.end_seq).where(CAMPAIGN.c.id == campaign_id)).scalar_one()
        + 1
    )
    stamped = session.execute(
        text(_unstamped_sql(session, "UPDATE {record} SET end_seq = :generation")),
        {"campaign": campaign_id, "generation": generation},
    ).rowcount
    if stamped:
        session.execute(
            update(CAMPAIGN).where(CAMPAIGN.c.id == campaign_id).values(end_seq=generation)
        )
    return stamped


def read(
    session: Session, campaign_id: int, cursor: tuple[int, int], limit: int
) -> tuple[list[int], tuple[int, int], bool]:
    """Ids of the records stamped after `cursor`, in stamp order: (ids, the new cursor,
    whether more follow). Two seeks into `ix_record_campaign_end`: the rest of the cursor's
    generation after its id, then the later generations (one `(end_seq, id) > cursor` would
    read the cursor's whole generation on both databases)."""
    generation, after = cursor
    mine = REC.c.campaign_id == campaign_id
    rows = session.execute(
        select(REC.c.end_seq, REC.c.id)
        .where(mine, REC.c.end_seq == generation, REC.c.id > after)
        .order_by(REC.c.id)
        .limit(limit + 1)
    ).all()
    if len(rows) <= limit:
        rows += session.execute(
            select(REC.c.end_seq, REC.c.id)
            .where(mine, REC.c.end_seq > generation)
            .order_by(REC.c.end_seq, REC.c.id)
            .limit(limit + 1 - len(rows))
        ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = (rows[-1].end_seq, rows[-1].id) if rows else cursor
    return [row.id for row in rows], last, more


def finished(session: Session, campaign_id: int) -> bool:
    """Whether no record of the campaign is waiting, ready, claimed or running (one look
    into `ix_record_campaign_state` per state, never a count)."""
    going = [s for s in S if s not in ENDED]
    found = (
        select(REC.c.id)
        .where(REC.c.campaign_id == campaign_id, literal_in(REC.c.state, going))
        .limit(1)
    )
    return session.execute(found).first() is None
