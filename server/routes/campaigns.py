"""/api/v1/campaigns and /api/v1/tokens: the submitter's and admin's bookkeeping."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from farmhand import wire
from farmhand.server import auth
from farmhand.server.catalog import campaigns
from farmhand.server.routes.deps import AdminDep, AnyRoleDep, DbDep, SubmitterDep, json_response
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
def create_campaign(body: wire.CampaignCreate, db: DbDep, _: SubmitterDep) -> Response:
    """Create a campaign; its version is one more than the highest with the same name."""
    with db.write() as session:
        return json_response(campaigns.create(session, spec=body), status_code=201)


@router.get(
    "/campaigns",
    response_model=list[wire.Campaign],
    summary="List campaigns with record counts by state",
    responses=errors(422),
)
def list_campaigns(db: DbDep, _: AnyRoleDep, name: wire.Text | None = None) -> list[wire.Campaign]:
    """Every campaign (or every version of `name`), oldest first, with counts by state. Agent
    tokens may look too: `farmhand agent --campaign NAME` resolves the name with them."""
    with db.read() as session:
        return campaigns.list_(session, name=name)


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
