"""Turn what people type — campaign names, record keys, ids — into the server's ids."""

from __future__ import annotations

from farmhand.agent import wire
from farmhand.agent.client import FarmhandClient


class RefError(LookupError):
    """Nothing (or more than one thing) matches; the message says which."""


def find_campaign(client: FarmhandClient, ref: str) -> wire.Campaign:
    """`NAME` (latest version), `NAME:VERSION` or a numeric id."""
    if ref.isdigit():
        return client.campaign(int(ref))
    name, _, version = ref.partition(":")
    versions = client.campaigns(name=name)
    if version:
        versions = [c for c in versions if str(c.version) == version]
    if not versions:
        raise RefError(f"no campaign '{ref}'")
    return max(versions, key=lambda c: c.version)


def find_record_ids(client: FarmhandClient, refs: list[str], campaign: str | None) -> list[int]:
    """Resolve record references: numeric ids, or keys (within --campaign when given)."""
    campaign_id = find_campaign(client, campaign).id if campaign else None
    ids = []
    for ref in refs:
        if ref.isdigit() and campaign_id is None:
            ids.append(int(ref))
            continue
        found = client.records_page(key=ref, campaign_id=campaign_id, limit=10).items
        if not found:
            where = f" in campaign '{campaign}'" if campaign else ""
            raise RefError(f"no record with key '{ref}'{where}")
        if len(found) > 1:
            raise RefError(f"key '{ref}' is in several campaigns; pass --campaign NAME")
        ids.append(found[0].id)
    return ids
