"""Campaigns: create (auto-versioned), list and get with counts by state."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session

from farmhand.agent import wire
from farmhand.server.errors import NotFound
from farmhand.server.tables import Campaign, Record


def create(session: Session, *, spec: wire.CampaignCreate) -> wire.Campaign:
    """A new campaign; version = highest existing version of the name + 1."""
    highest = session.execute(
        select(func.max(Campaign.version)).where(Campaign.name == spec.name)
    ).scalar()
    row = Campaign(
        name=spec.name, version=(highest or 0) + 1, software=spec.software, defaults=spec.defaults
    )
    session.add(row)
    session.flush()
    return _out(row, {})


def counts(session: Session, campaign_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """Record counts by state for each campaign."""
    stmt = select(Record.campaign_id, Record.state, func.count()).group_by(
        Record.campaign_id, Record.state
    )
    if campaign_ids is not None:
        stmt = stmt.where(Record.campaign_id.in_(campaign_ids))
    by_campaign: dict[int, dict[str, int]] = {}
    for campaign_id, state, n in session.execute(stmt):
        by_campaign.setdefault(campaign_id, {})[state] = n
    return by_campaign


def get(session: Session, campaign_id: int) -> wire.Campaign:
    """One campaign with counts, or 404."""
    row = session.get(Campaign, campaign_id)
    if row is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return _out(row, counts(session, [campaign_id]).get(campaign_id, {}))


def list_(session: Session, *, name: str | None = None) -> list[wire.Campaign]:
    """Every campaign (or every version of one name), newest last, with counts."""
    stmt = select(Campaign).order_by(Campaign.id)
    if name is not None:
        stmt = stmt.where(Campaign.name == name)
    rows = list(session.execute(stmt).scalars())
    all_counts = counts(session)
    return [_out(row, all_counts.get(row.id, {})) for row in rows]


def _out(row: Campaign, state_counts: dict[str, int]) -> wire.Campaign:
    full = {state: state_counts.get(state.value, 0) for state in wire.RecordState}
    return wire.Campaign.model_validate({**row.model_dump(), "counts": full})
