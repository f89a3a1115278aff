"""Campaigns out of the way: archived (hidden, kept) or deleted (gone, with every record, run,
result, checkpoint and input reference; the snapshots stay, content-addressed and possibly
shared).

Deleting is one transaction. It is refused while records of other campaigns depend on this
one's (their parents would vanish), and while runs are live unless `force`, which stops them
first: their agents hear at the next heartbeat that the leases are gone and stop the
commands. Only the token that created the campaign, or an admin, may delete it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from farmhand import wire
from farmhand.server.db import literal_in
from farmhand.server.errors import Conflict, Forbidden, NotFound
from farmhand.server.queue.states import LIVE_RUN
from farmhand.server.tables import CAMPAIGN, CHECKPOINT, EDGE, INPUT, REC, RESULT, RUN


def set_archived(conn: Connection, *, campaign_id: int, archived: bool, now: datetime) -> None:
    """Archive (hide) or unarchive a campaign; repeating either is harmless."""
    changed = conn.execute(
        update(CAMPAIGN)
        .where(CAMPAIGN.c.id == campaign_id)
        .values(archived_at=func.coalesce(CAMPAIGN.c.archived_at, now) if archived else None)
    ).rowcount
    if not changed:
        raise NotFound(f"campaign {campaign_id} does not exist")


def delete_campaign(
    conn: Connection, *, campaign_id: int, force: bool, token_id: int | None
) -> wire.CampaignDeleted:
    """Delete a campaign and everything of its records; `token_id` (None: an admin) must be
    the token that created it. Refused (nothing changes) as the module docstring says."""
    found = conn.execute(
        select(CAMPAIGN.c.name, CAMPAIGN.c.version, CAMPAIGN.c.created_by).where(
            CAMPAIGN.c.id == campaign_id
        )
    ).first()
    if found is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    name, version, created_by = found
    label = f"{name}:{version}"
    if token_id is not None and created_by != token_id:
        raise Forbidden(
            f"campaign {label} was not created with this token; only the token that created "
            "it or an admin token may delete it"
        )
    # Locked (PostgreSQL) in every writer's order, records (in id order) before the
    # campaign (see queue/lifecycle.py), so a report ending one of them, which then locks
    # the campaign, cannot deadlock with this: its records, so no claim leases one while
    # they go; the campaign, so no submission adds one (the statements below see any that
    # came in between, and delete them too).
    records = select(REC.c.id).where(REC.c.campaign_id == campaign_id).order_by(REC.c.id)
    campaign = select(CAMPAIGN.c.id).where(CAMPAIGN.c.id == campaign_id)
    conn.execute(records.with_for_update())
    conn.execute(campaign.with_for_update())
    ids = select(REC.c.id).where(REC.c.campaign_id == campaign_id).scalar_subquery()
    _refuse_dependents(conn, campaign_id, label)
    live = conn.execute(
        select(func.count()).where(RUN.c.record_id.in_(ids), literal_in(RUN.c.state, LIVE_RUN))
    ).scalar_one()
    if live and not force:
        raise Conflict(
            f"campaign {label} has {live} live run(s); stop them first (cancel its records) "
            "or delete with force (--force), which stops them"
        )
    for table in (CHECKPOINT, RESULT, INPUT):
        conn.execute(delete(table).where(table.c.record_id.in_(ids)))
    conn.execute(delete(EDGE).where(EDGE.c.record_id.in_(ids)))
    runs = conn.execute(delete(RUN).where(RUN.c.record_id.in_(ids))).rowcount
    records = conn.execute(delete(REC).where(REC.c.campaign_id == campaign_id)).rowcount
    unlinked = [
        f"{row.name}:{row.version}"
        for row in conn.execute(
            update(CAMPAIGN)
            .where(CAMPAIGN.c.based_on_id == campaign_id)
            .values(based_on_id=None)
            .returning(CAMPAIGN.c.name, CAMPAIGN.c.version)
        )
    ]
    conn.execute(delete(CAMPAIGN).where(CAMPAIGN.c.id == campaign_id))
    return wire.CampaignDeleted(
        campaign_id=campaign_id,
        name=name,
        version=version,
        records=records,
        runs=runs,
        cancelled=live,
        unlinked=sorted(unlinked),
    )


def _refuse_dependents(conn: Connection, campaign_id: int, label: str) -> None:
    """409 naming the other campaigns whose records have parents in this one."""
    child, parent, owner = aliased(REC), aliased(REC), aliased(CAMPAIGN)
    dependents = conn.execute(
        select(owner.c.name, owner.c.version, func.count())
        .select_from(EDGE)
        .join(parent, parent.c.id == EDGE.c.parent_id)
        .join(child, child.c.id == EDGE.c.record_id)
        .join(owner, owner.c.id == child.c.campaign_id)
        .where(parent.c.campaign_id == campaign_id, child.c.campaign_id != campaign_id)
        .group_by(owner.c.name, owner.c.version)
        .order_by(owner.c.name, owner.c.version)
    ).all()
    if dependents:
        named = ", ".join(f"{n}:{v} ({count} record(s))" for n, v, count in dependents)
        raise Conflict(
            f"campaign {label} cannot be deleted: records of other campaigns have parents in "
            f"it: {named}; delete those first"
        )
