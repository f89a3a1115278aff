"""The backlog an autoscaler sizes its batch jobs for: ready records grouped by what they
need (runner, cores, GPUs, memory, walltime).

One GROUP BY over the ready rows (partial index `ix_record_ready`, or
`ix_record_ready_campaign` for one campaign), largest group first and at most
`MAX_BACKLOG_GROUPS` of them; the records past those are counted, not grouped.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.tables import REC

NEEDS = ("runner", "cores", "gpus", "memory_mb", "walltime")


def backlog(
    session: Session, *, campaign_id: int | None = None, dataset: str | None = None
) -> wire.Backlog:
    """Ready records matching the filters, by need, largest group first."""
    where = [literal_in(REC.c.state, [wire.RecordState.ready.value])]
    if campaign_id is not None:
        where.append(REC.c.campaign_id == campaign_id)
    if dataset is not None:
        where.append(REC.c.dataset == dataset)
    columns = [REC.c[n] for n in NEEDS]
    query = (
        select(*columns, func.count().label("n"))
        .where(*where)
        .group_by(*columns)
        .order_by(func.count().desc(), *columns)
        .limit(wire.MAX_BACKLOG_GROUPS + 1)
    )
    rows = session.execute(query).all()
    groups = [
        wire.BacklogGroup(count=row.n, **{n: getattr(row, n) for n in NEEDS})
        for row in rows[: wire.MAX_BACKLOG_GROUPS]
    ]
    counted = sum(g.count for g in groups)
    if len(rows) > wire.MAX_BACKLOG_GROUPS:
        ready = session.execute(select(func.count()).where(*where)).scalar_one()
    else:
        ready = counted
    return wire.Backlog(ready=ready, groups=groups, other=ready - counted)
