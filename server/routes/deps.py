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
from starlette.datastructures import State

from farmhand.server import auth
from farmhand.server.db import Database
from farmhand.server.errors import Forbidden
from farmhand.server.queue.waking.reader import LoopReader
from farmhand.server.queue.waking.wakeups import Wakeup
from farmhand.server.settings import Settings
from farmhand.server.tables import utcnow
from farmhand.wire import Role

_bearer = HTTPBearer(auto_error=False, description="a farmhand token: `farmhand token create`")
_TOKEN_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's id and role."""

    token_id: int
    role: Role

    @property
    def agent_token(self) -> int | None:
        """The token an agent (or a run's agent) must have been registered with for this
        caller to act as it: its own; None for an admin, who may act as any agent."""
        return None if self.role == Role.admin else self.token_id

    @property
    def lease_reader(self) -> int | None:
        """The token whose live leases bound what this caller may read: its own for an agent
        token; None for submitters and admins, who read everything."""
        return self.token_id if self.role == Role.agent else None


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


#: Where the gate (server/serving/gate.py) leaves the caller it authenticated, in the ASGI scope.
CALLER = "farmhand.caller"


async def identify(state: State, secret: str | None) -> Caller:
    """The caller a bearer secret belongs to, or `Unauthorized`: the one token lookup of the
    API and the pages. A hit in the app's token cache (10 s) costs a sha256; a miss, one read
    on the thread pool. A missing secret is refused without touching the database."""
    secret = auth.require_secret(secret)
    cache: dict[str, tuple[float, Caller]] = state.token_cache
    key = auth.digest(secret)
    hit = cache.get(key)
    if hit and time.monotonic() - hit[0] < _TOKEN_CACHE_SECONDS:
        return hit[1]
    db: Database = state.db

    def lookup() -> Caller:
        with db.read() as session:
            row = auth.authenticate(session, secret)
            return Caller(token_id=row.id, role=Role(row.role))

    caller = await run_in_threadpool(lookup)
    cache[key] = (time.monotonic(), caller)
    return caller


def require(*roles: Role) -> Callable[..., Caller]:
    """A dependency that lets through only tokens whose role is one of `roles`. Under
    /api/v1 the gate has authenticated the token before the body was read (401 otherwise);
    this reuses its answer and checks the role (403)."""
    allowed = ", ".join(r.value for r in roles)

    async def dependency(
        request: Request,
        # Declared for the OpenAPI security scheme (the lock in /docs); the gate reads it.
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Caller:
        caller = request.scope.get(CALLER)
        if caller is None:  # a route outside the gate's /api/v1
            secret = credentials.credentials if credentials else None
            caller = await identify(request.app.state, secret)
        if caller.role not in roles:
            raise Forbidden(f"a {caller.role.value} token may not do this; it needs: {allowed}")
        return caller

    return dependency


AdminDep = Annotated[Caller, Depends(require(Role.admin))]
SubmitterDep = Annotated[Caller, Depends(require(Role.admin, Role.submitter))]
AgentDep = Annotated[Caller, Depends(require(Role.admin, Role.agent))]
#: Any valid token; routes narrow what an agent token sees (snapshots, campaigns).
AnyRoleDep = Annotated[Caller, Depends(require(Role.admin, Role.submitter, Role.agent))]


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """`body` serialised by pydantic straight to JSON. Mutation routes call it inside their
    transaction, so an answer that cannot be built rolls the change back instead of
    answering 500 after the commit. (Returned as is, FastAPI would also validate it against
    the route's response model, which it already is: ~5 % of a claim's CPU.)"""
    return Response(body.model_dump_json(), status_code=status_code, media_type="application/json")


@dataclass(frozen=True)
class AgentCall:
    """What an agent's hot route (claims, starts, reports) needs, from one dependency: FastAPI
    spends more solving each `Depends` than these cost to build. `now` is the request's clock
    (as `NowDep`); `caller` an agent or admin token (as `AgentDep`)."""

    db: Database
    settings: Settings
    wakeup: Wakeup
    caller: Caller
    now: datetime
    claimers: set[int]  # agents whose claims arrived since the last `agents.seen` (app.py)
    reader: LoopReader | None  # PostgreSQL: small reads on the event loop


_agent_or_admin = require(Role.admin, Role.agent)


async def get_agent_call(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> AgentCall:
    """The app's database, settings and wakeup, the caller (403 unless an agent or admin
    token) and the clock, for one request."""
    caller = await _agent_or_admin(request, credentials)
    state = request.app.state
    return AgentCall(
        state.db, state.settings, state.wakeup, caller, utcnow(), state.claimers, state.reader
    )


AgentCallDep = Annotated[AgentCall, Depends(get_agent_call)]
