"""What follows when records end: children, descendants, temporary args, campaign ends.

Every path that ends records (run reports, lease expiry, cancel) calls `records_ended` in
the same transaction, so a child becomes ready in the transaction that finished its last
parent, and a campaign's `finished_at` is set by the transaction that ended its last
unfinished record.

Concurrency (PostgreSQL, READ COMMITTED): two transactions ending a campaign's last two
records lock different record rows and would each still see the other's record unfinished,
so neither would set `finished_at`. Whoever decides a campaign's `finished_at` (this
module's `finish_campaigns` and `reopen_campaigns`) first locks its row (`FOR NO KEY
UPDATE`, which record inserts, whose foreign key takes `FOR KEY SHARE`, do not wait for),
then looks at its records in a new statement: the later of two such transactions waits for
the earlier one's commit and then sees its records. The campaign is the last lock a writer
takes: records, then runs, then campaigns, each in id order (two real transactions prove it
in `test_campaign_finish.py`). SQLite serialises writers already.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand.server import prepared
from farmhand.server.db import connection_of, literal_in
from farmhand.server.queue import graph as dependencies
from farmhand.server.queue.states import UNFINISHED
from farmhand.server.tables import CAMPAIGN, REC, UTCDateTime
from farmhand.wire import RecordState

#: Counts in `session.info` the records made ready: the route wakes that many waiting claims.
MADE_READY = "farmhand_made_ready"
S = RecordState
# Built once: every batch of reports runs the first (building it cost more than running it).
ANY_UNFINISHED = (
    select(REC.c.id)
    .where(REC.c.campaign_id == bindparam("b_campaign"), literal_in(REC.c.state, UNFINISHED))
    .limit(1)
)
LOCK_CAMPAIGNS = (
    select(CAMPAIGN.c.id)
    .where(CAMPAIGN.c.id.in_(bindparam("b_campaigns", expanding=True)))
    .order_by(CAMPAIGN.c.id)
    .with_for_update(key_share=True)  # FOR NO KEY UPDATE; run on PostgreSQL only
)
FINISH_CAMPAIGN = (
    update(CAMPAIGN)
    .where(CAMPAIGN.c.id == bindparam("b_campaign"), CAMPAIGN.c.finished_at.is_(None))
    .values(finished_at=bindparam("b_now", type_=UTCDateTime))
)
REOPEN_CAMPAIGN = (
    update(CAMPAIGN)
    .where(CAMPAIGN.c.id == bindparam("b_campaign"), CAMPAIGN.c.finished_at.is_not(None))
    .values(finished_at=None)
)


def records_ended(
    session: Session | Connection,
    *,
    done: Iterable[int],
    failed: dict[int, str],
    now: datetime,
    campaign_ids: Iterable[int] | None = None,
    temporary: Iterable[int] | None = None,
    parents: Collection[int] | None = None,
) -> None:
    """`done` records unblock their children; `failed` ones (id → key, failed for good or
    cancelled) fail their waiting descendants; both drop their temporary run_args.

    A caller that read the records already passes their `campaign_ids`, which of them have
    `temporary` run_args and which are `parents` (have children; read after they were
    locked), sparing the hot report path up to three statements.
    """
    done_ids, failed_ids = sorted(set(done)), sorted(failed)
    ended = done_ids + failed_ids
    if not ended:
        return
    if parents is not None:  # the others have no child to unblock or fail
        done_ids = [rid for rid in done_ids if rid in parents]
        failed = {rid: key for rid, key in failed.items() if rid in parents}
    holders = ended if temporary is None else sorted(set(temporary) & set(ended))
    if holders:
        session.execute(
            update(REC)
            .where(REC.c.id.in_(holders), REC.c.temporary_run_args.is_not(None))
            .values(temporary_run_args=None)
        )
    unblocked = dependencies.unblock(session, done_ids, now=now)
    if unblocked:
        session.info[MADE_READY] = session.info.get(MADE_READY, 0) + unblocked
    # Descendants failed upstream may be another campaign's last records.
    downstream = dependencies.fail_downstream(session, failed, now=now)
    if campaign_ids is None:
        campaign_ids = session.execute(
            select(REC.c.campaign_id).where(REC.c.id.in_(ended)).distinct()
        ).scalars()
    finish_campaigns(session, {*campaign_ids, *downstream}, now=now)


def made_ready(session: Session | Connection) -> int:
    """How many records this transaction made ready (children unblocked); asking clears it
    (a pooled connection's `info` outlives the transaction)."""
    return session.info.pop(MADE_READY, 0)


def finish_campaigns(
    session: Session | Connection, campaign_ids: Iterable[int], *, now: datetime
) -> None:
    """Set `finished_at` on these campaigns when none of their records is unfinished."""
    if isinstance(session, Session):
        session.flush()  # the statements run on the driver's cursor, which does not flush
    conn = connection_of(session)
    for campaign_id in lock_campaigns(session, campaign_ids):
        if not prepared.fetch(conn, ANY_UNFINISHED, {"b_campaign": campaign_id}):
            prepared.execute(conn, FINISH_CAMPAIGN, {"b_campaign": campaign_id, "b_now": now})


def reopen_campaigns(
    session: Session | Connection, campaign_ids: Iterable[int], *, now: datetime
) -> None:
    """New or re-queued work: these campaigns are not finished any more. Unless all of it
    ended in this very transaction (a record queued under a failed parent fails upstream at
    once): then nothing is left to run and they are finished, as its end would have left
    them."""
    for campaign_id in lock_campaigns(session, campaign_ids):
        if session.execute(ANY_UNFINISHED, {"b_campaign": campaign_id}).first() is None:
            session.execute(FINISH_CAMPAIGN, {"b_campaign": campaign_id, "b_now": now})
        else:
            session.execute(REOPEN_CAMPAIGN, {"b_campaign": campaign_id})


def lock_campaigns(session: Session | Connection, campaign_ids: Iterable[int]) -> list[int]:
    """Lock these campaigns' rows on PostgreSQL, in id order (see the module docstring);
    their ids in that order."""
    ids = sorted(set(campaign_ids))
    if ids and connection_of(session).dialect.name == "postgresql":
        session.execute(LOCK_CAMPAIGNS, {"b_campaigns": ids})
    return ids
