"""FastAPI dependencies: the database, settings, the clock and role checks.

They are `async def` on purpose: FastAPI runs every sync dependency on the thread pool, one
hop each, which costs more than the work they do. Only a token-cache miss touches the DB.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from farmhand.agent.wire import Role
from farmhand.server import auth
from farmhand.server.db import Database
from farmhand.server.errors import Forbidden
from farmhand.server.notify import Wakeup
from farmhand.server.settings import Settings
from farmhand.server.tables import utcnow

_bearer = HTTPBearer(auto_error=False, description="a farmhand token: `farmhand token create`")
_TOKEN_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's id and role."""

    token_id: int
    role: Role


async def get_db(request: Request) -> Database:
    """The app's database."""
    return request.app.state.db


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


async def get_wakeup(request: Request) -> Wakeup:
    """The app's long-poll wakeup."""
    return request.app.state.wakeup


async def get_now() -> datetime:
    """The request's clock."""
    return utcnow()


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WakeupDep = Annotated[Wakeup, Depends(get_wakeup)]
NowDep = Annotated[datetime, Depends(get_now)]


async def _caller(
    request: Request, db: Database, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    secret = credentials.credentials if credentials else None
    cache: dict[str, tuple[float, Caller]] = request.app.state.token_cache
    key = auth.digest(secret) if secret else ""
    hit = cache.get(key)
    if hit and time.monotonic() - hit[0] < _TOKEN_CACHE_SECONDS:
        return hit[1]

    def lookup() -> Caller:
        with db.read() as session:
            row = auth.authenticate(session, secret)
            return Caller(token_id=row.id, role=Role(row.role))

    caller = await run_in_threadpool(lookup)
    cache[key] = (time.monotonic(), caller)
    return caller


def require(*roles: Role) -> Callable[..., Caller]:
    """A dependency that lets through only tokens whose role is one of `roles`."""
    allowed = ", ".join(r.value for r in roles)

    async def dependency(
        request: Request,
        db: DbDep,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Caller:
        caller = await _caller(request, db, credentials)
        if caller.role not in roles:
            raise Forbidden(f"a {caller.role.value} token may not do this; it needs: {allowed}")
        return caller

    return dependency


AdminDep = Annotated[Caller, Depends(require(Role.admin))]
SubmitterDep = Annotated[Caller, Depends(require(Role.admin, Role.submitter))]
AgentDep = Annotated[Caller, Depends(require(Role.admin, Role.agent))]


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """`body` serialised by pydantic straight to JSON. Mutation routes call it inside their
    transaction, so an answer that cannot be built rolls the change back instead of
    answering 500 after the commit. (Returned as is, FastAPI would also validate it against
    the route's response model, which it already is: ~5 % of a claim's CPU.)"""
    return Response(body.model_dump_json(), status_code=status_code, media_type="application/json")
