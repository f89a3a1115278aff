"""What the queue watch (app.py `_watch_queue`) reads once per interval while claims wait:
whether any claim could take something now, and if not, when time alone next could change
that. Read-only; both statements are built once and run on the driver's cursor."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, exists, func, or_, select
from sqlalchemy.engine import Connection

from farmhand.server import prepared
from farmhand.server.db import literal_in
from farmhand.server.queue import states
from farmhand.server.queue.claim import due, lapsed
from farmhand.server.queue.states import Event
from farmhand.server.tables import REC, UTCDateTime

__all__ = ["claimable", "due_next"]


@cache
def _statements() -> tuple[Any, Any]:
    now = bindparam("b_now", type_=UTCDateTime)
    ready = literal_in(REC.c.state, states.source_values(Event.claim))
    waiting = select(func.min(REC.c.not_before)).where(ready, REC.c.not_before > now)
    leased = select(func.min(REC.c.lease_expires_at)).where(
        literal_in(REC.c.state, states.source_values(Event.requeue))
    )
    return (
        select(or_(exists().where(ready, due(now)), lapsed(now)).label("claimable")),
        select(waiting.scalar_subquery().label("delay"), leased.scalar_subquery().label("lease")),
    )


def claimable(conn: Connection, *, now: datetime) -> bool:
    """Whether any claim could take something now: a ready record whose retry delay is over,
    or a lease that ran out (two index probes). Waiting claims re-try only when it says yes,
    so a record waiting out its retry delay wakes them once its time has come."""
    (row,) = prepared.fetch(conn, _statements()[0], {"b_now": now})
    return bool(row.claimable)


def due_next(conn: Connection, *, now: datetime) -> datetime | None:
    """The next moment the queue changes by time alone, after `now`: the soonest end of a
    ready record's retry delay or of a live lease (None: there is neither). Asked when
    nothing is claimable (`claimable`), so no such moment lies behind `now`; the leases
    are read from ix_record_live_lease, the delays from the ready records that wait."""
    (row,) = prepared.fetch(conn, _statements()[1], {"b_now": now})
    moments = [moment for moment in (row.delay, row.lease) if moment is not None]
    return min(moments) if moments else None
