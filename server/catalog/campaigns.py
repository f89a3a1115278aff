"""Campaigns: create (auto-versioned), list and get with counts by state."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.errors import Invalid, NotFound
from farmhand.server.tables import Campaign, Record


def create(
    session: Session, *, spec: wire.CampaignCreate, created_by: int | None = None
) -> wire.Campaign:
    """A new campaign; version = highest existing version of the name + 1. `created_by` is
    the creating token's id (it may delete the campaign)."""
    based_on = find(session, spec.based_on) if spec.based_on else None
    highest = session.execute(
        select(func.max(Campaign.version)).where(Campaign.name == spec.name)
    ).scalar()
    row = Campaign(
        name=spec.name,
        version=(highest or 0) + 1,
        software=spec.software,
        defaults=spec.defaults,
        based_on_id=based_on.id if based_on else None,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return _out(row, {}, _labels(session, [row]))


def find(session: Session, ref: str) -> Campaign:
    """The campaign `NAME:VERSION`, or the latest version of `NAME`; 422 naming it if none."""
    name, _, version = ref.partition(":")
    stmt = select(Campaign).where(Campaign.name == name)
    if version:
        if not version.isdigit():
            raise Invalid(f"campaign '{ref}': the version after ':' must be a whole number")
        stmt = stmt.where(Campaign.version == int(version))
    row = session.execute(stmt.order_by(Campaign.version.desc()).limit(1)).scalar_one_or_none()
    if row is None:
        raise Invalid(f"campaign '{ref}' does not exist")
    return row


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


def check_exists(session: Session, campaign_id: int) -> Campaign:
    """The campaign's row (no counts: one lookup by id), or 404."""
    row = session.get(Campaign, campaign_id)
    if row is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return row


def get(session: Session, campaign_id: int) -> wire.Campaign:
    """One campaign with counts, or 404."""
    row = check_exists(session, campaign_id)
    return _out(row, counts(session, [campaign_id]).get(campaign_id, {}), _labels(session, [row]))


def list_(
    session: Session, *, name: str | None = None, archived: bool = False
) -> list[wire.Campaign]:
    """Every campaign but the archived ones (all with `archived`), or every version of one
    name (archived or not), oldest first, with counts."""
    stmt = select(Campaign).order_by(Campaign.id)
    if name is not None:
        stmt = stmt.where(Campaign.name == name)
    elif not archived:
        stmt = stmt.where(Campaign.archived_at.is_(None))
    rows = list(session.execute(stmt).scalars())
    all_counts = counts(session)
    labels = _labels(session, rows)
    return [_out(row, all_counts.get(row.id, {}), labels) for row in rows]


def _labels(session: Session, rows: list[Campaign]) -> dict[int, str]:
    """`NAME:VERSION` of the campaigns these rows are based on."""
    ids = {row.based_on_id for row in rows if row.based_on_id is not None}
    if not ids:
        return {}
    found = session.execute(
        select(Campaign.id, Campaign.name, Campaign.version).where(Campaign.id.in_(ids))
    )
    return {cid: f"{name}:{version}" for cid, name, version in found}


def _out(row: Campaign, state_counts: dict[str, int], labels: dict[int, str]) -> wire.Campaign:
    full = {state: state_counts.get(state.value, 0) for state in wire.RecordState}
    based_on = labels.get(row.based_on_id) if row.based_on_id is not None else None
    return wire.Campaign.model_validate({**row.model_dump(), "counts": full, "based_on": based_on})
