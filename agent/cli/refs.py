"""Turn what people type — campaign names, record keys, ids — into the server's ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from farmhand import wire
    from farmhand.client import FarmhandClient


class RefError(LookupError):
    """Nothing (or more than one thing) matches; the message says which."""


def split_campaign(ref: str) -> tuple[str, int | None]:
    """`NAME` → (NAME, None); `NAME:VERSION` → (NAME, VERSION); RefError when malformed."""
    name, colon, version = ref.partition(":")
    if not name or (colon and not version.isdigit()):
        raise RefError(f"campaign '{ref}' is not NAME or NAME:VERSION (e.g. relax or relax:3)")
    return name, int(version) if colon else None


def find_campaign(client: FarmhandClient, ref: str) -> wire.Campaign:
    """`NAME` (its latest version), `NAME:VERSION` or a numeric id."""
    if ref.isdigit():
        return client.campaign(int(ref))
    name, version = split_campaign(ref)
    versions = client.campaigns(name=name)
    if not versions:
        raise RefError(f"no campaign '{name}': farmhand campaign new {name}")
    if version is None:
        return max(versions, key=lambda c: c.version)
    for campaign in versions:
        if campaign.version == version:
            return campaign
    have = ", ".join(str(c.version) for c in sorted(versions, key=lambda c: c.version))
    raise RefError(f"no campaign '{ref}': '{name}' has version(s) {have}")


def find_campaign_ids(client: FarmhandClient, refs: list[str]) -> list[int]:
    """Resolve each reference with `find_campaign` (a bare NAME: its latest version now)."""
    return list(dict.fromkeys(find_campaign(client, ref).id for ref in refs))


def find_record_ids(client: FarmhandClient, refs: list[str], campaign: str | None) -> list[int]:
    """Resolve record references: `#17` is an id; a key within --campaign when given; a bare
    number without --campaign is an id too."""
    campaign_id = find_campaign(client, campaign).id if campaign else None
    ids = []
    for ref in refs:
        if ref.startswith("#") and ref[1:].isdigit():
            ids.append(int(ref[1:]))
            continue
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
