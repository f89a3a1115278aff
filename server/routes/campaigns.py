"""/api/v1/campaigns and /api/v1/tokens: the submitter's and admin's bookkeeping."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response

from farmhand import wire
from farmhand.server import auth
from farmhand.server.catalog import campaigns, removal
from farmhand.server.db import Database
from farmhand.server.routes.deps import (
    AdminDep,
    AnyRoleDep,
    DbDep,
    NowDep,
    SubmitterDep,
    json_response,
)
from farmhand.server.routes.openapi import CAMPAIGN, TOKEN_CREATE, errors

router = APIRouter(tags=["campaigns"])


@router.post(
    "/campaigns",
    status_code=201,
    response_model=wire.Campaign,
    summary="Create a campaign (next version of its name)",
    responses=errors(413, 422),
    openapi_extra=CAMPAIGN,
)
def create_campaign(body: wire.CampaignCreate, db: DbDep, caller: SubmitterDep) -> Response:
    """Create a campaign; its version is one more than the highest with the same name."""
    with db.write() as session:
        created = campaigns.create(session, spec=body, created_by=caller.token_id)
        return json_response(created, status_code=201)


@router.get(
    "/campaigns",
    response_model=list[wire.Campaign],
    summary="List campaigns with record counts by state",
    responses=errors(422),
)
def list_campaigns(
    db: DbDep, _: AnyRoleDep, name: wire.Text | None = None, archived: bool = False
) -> list[wire.Campaign]:
    """Every campaign but the archived ones (`archived=true`: those too), or every version of
    `name`, archived or not; oldest first, with counts by state. Agent tokens may look too:
    `farmhand agent --campaign NAME` resolves the name with them."""
    with db.read() as session:
        return campaigns.list_(session, name=name, archived=archived)


@router.get(
    "/campaigns/{campaign_id}",
    response_model=wire.Campaign,
    summary="Get a campaign",
    responses=errors(404, 422),
)
def get_campaign(campaign_id: wire.Id, db: DbDep, _: AnyRoleDep) -> wire.Campaign:
    """One campaign with its record counts by state (agent tokens too: `farmhand agent
    --campaign ID`)."""
    with db.read() as session:
        return campaigns.get(session, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/archive",
    response_model=wire.Campaign,
    summary="Archive a campaign (hide it)",
    responses=errors(404, 422),
)
def archive_campaign(campaign_id: wire.Id, db: DbDep, now: NowDep, _: SubmitterDep) -> Response:
    """Hide the campaign from the overview, `farmhand status` and listings (its records stay
    and can still run); repeating it is harmless."""
    return _archive(db, now, campaign_id, archived=True)


@router.post(
    "/campaigns/{campaign_id}/unarchive",
    response_model=wire.Campaign,
    summary="Unarchive a campaign",
    responses=errors(404, 422),
)
def unarchive_campaign(campaign_id: wire.Id, db: DbDep, now: NowDep, _: SubmitterDep) -> Response:
    """Show an archived campaign again."""
    return _archive(db, now, campaign_id, archived=False)


def _archive(db: Database, now: datetime, campaign_id: int, *, archived: bool) -> Response:
    with db.write() as session:
        removal.set_archived(
            session.connection(), campaign_id=campaign_id, archived=archived, now=now
        )
        return json_response(campaigns.get(session, campaign_id))


@router.delete(
    "/campaigns/{campaign_id}",
    response_model=wire.CampaignDeleted,
    summary="Delete a campaign and its records",
    responses=errors(403, 404, 409, 422),
)
def delete_campaign(
    campaign_id: wire.Id, db: DbDep, caller: SubmitterDep, force: bool = False
) -> Response:
    """Delete the campaign with its records, runs, results and checkpoints (snapshots stay).
    Only the token that created it, or an admin, may. 409 while runs are live (`force=true`
    stops them first: their agents hear it at their next heartbeat) or while records of
    other campaigns have parents in it."""
    token = None if caller.role == wire.Role.admin else caller.token_id
    with db.write_core() as conn:
        deleted = removal.delete_campaign(
            conn, campaign_id=campaign_id, force=force, token_id=token
        )
        return json_response(deleted)


tokens = APIRouter(tags=["tokens"])


@tokens.post(
    "/tokens",
    status_code=201,
    response_model=wire.TokenCreated,
    summary="Create a bearer token (admin)",
    responses=errors(413, 422),
    openapi_extra=TOKEN_CREATE,
)
def create_token(body: wire.TokenCreate, db: DbDep, _: AdminDep) -> Response:
    """Create a token with a role; the secret is shown only in this answer."""
    with db.write() as session:
        row, secret = auth.create_token(session, role=body.role, name=body.name)
        created = wire.TokenCreated(id=row.id, role=body.role, name=row.name, token=secret)
        return json_response(created, status_code=201)


@tokens.get(
    "/tokens",
    response_model=list[wire.TokenInfo],
    summary="List bearer tokens (admin)",
    responses=errors(),
)
def list_tokens(db: DbDep, _: AdminDep) -> list[wire.TokenInfo]:
    """Every token with its id, role, name, creation time and whether it is revoked; never
    a secret (the server keeps only their hashes)."""
    with db.read() as session:
        return [wire.TokenInfo.model_validate(row) for row in auth.list_tokens(session)]


@tokens.post(
    "/tokens/{token_id}/revoke",
    response_model=wire.TokenInfo,
    summary="Revoke a bearer token (admin)",
    responses=errors(404, 409, 422),
)
def revoke_token(
    token_id: wire.Id, request: Request, db: DbDep, caller: AdminDep
) -> wire.TokenInfo:
    """Revoke a token for good: from now on it gets 401 on this server, and within the
    10-second token cache on other replicas. Revoking it again changes nothing; the token
    of this very request cannot revoke itself (409)."""
    with db.write() as session:
        row = auth.revoke(session, token_id, caller_id=caller.token_id)
        info = wire.TokenInfo.model_validate(row)
    request.app.state.token_cache.clear()  # this replica: at once
    return info
