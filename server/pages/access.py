"""Who is looking at the pages: the login form, the session cookie and CSRF protection.

The session cookie carries the bearer token the user typed in, so it works on every server
replica and after restarts, and revoking the token ends the session. It is `HttpOnly`
(scripts cannot read it), `SameSite=Strict` (other sites cannot make the browser send it)
and `Secure` over HTTPS. Every POST also carries a CSRF token derived from the session
token, and a POST whose `Origin` names another host is refused.

The pages are for people: submitter and admin tokens. An agent token cannot log in, and a
session made with one before (or a cookie set by hand) gets 403 on every page; it may still
log out.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from farmhand.server.errors import Unauthorized
from farmhand.server.pages.render import LIVE_HEADER, render

# The API's token check with its cache: the pages authenticate the same tokens the same way.
from farmhand.server.routes.deps import identify
from farmhand.wire import Role

COOKIE = "farmhand_session"
SESSION_SECONDS = 12 * 3600
#: Roles that may use the pages at all.
READERS = frozenset({Role.admin, Role.submitter})
#: Roles that may cancel and retry records from the pages; others only look.
ACTORS = frozenset({Role.admin, Role.submitter})

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """No valid session: send the browser to the login form (or a 401 to a live refresh)."""


class Refused(Exception):
    """A page request that is not allowed; shown as an error page with `status`."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Viewer:
    """A logged-in page user."""

    role: Role
    csrf: str

    @property
    def can_act(self) -> bool:
        """May cancel and retry records."""
        return self.role in ACTORS


def csrf_token(secret: str) -> str:
    """The CSRF token of a session: only someone holding the session token can compute it."""
    return hmac.new(secret.encode(), b"farmhand pages csrf", hashlib.sha256).hexdigest()[:32]


def refuse_agents(role: Role) -> None:
    """Refused (403) for a role that may not use the pages."""
    if role not in READERS:
        raise Refused(
            f"a {role.value} token cannot use the pages; log in with a submitter or admin "
            "token (farmhand token create --role submitter)"
        )


async def session(request: Request) -> Viewer:
    """The session's user, whatever the role, or `LoginRequired`."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise LoginRequired
    try:
        caller = await identify(request.app.state, secret)
    except Unauthorized:
        raise LoginRequired from None
    return Viewer(role=caller.role, csrf=csrf_token(secret))


SessionDep = Annotated[Viewer, Depends(session)]


async def viewer(who: SessionDep) -> Viewer:
    """The dependency every page takes: the session's viewer, `LoginRequired` without one,
    or 403 for an agent token's session."""
    refuse_agents(who.role)
    return who


ViewerDep = Annotated[Viewer, Depends(viewer)]


def check_origin(request: Request) -> None:
    """Refuse a POST that a page on another host sent (when the browser says so)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Refused(f"a form posted from {origin} may not act on this server")


async def poster(request: Request, who: SessionDep, csrf: Annotated[str, Form()] = "") -> Viewer:
    """A POST from one of our own pages: same origin, carrying the session's CSRF token."""
    check_origin(request)
    if not hmac.compare_digest(csrf, who.csrf):
        raise Refused("the form's CSRF token is missing or stale; reload the page and retry")
    return who


PosterDep = Annotated[Viewer, Depends(poster)]


async def actor(who: PosterDep) -> Viewer:
    """A POST by a user allowed to cancel and retry."""
    refuse_agents(who.role)
    if not who.can_act:
        raise Refused(f"a {who.role.value} token may only look; acting needs a submitter token")
    return who


ActorDep = Annotated[Viewer, Depends(actor)]


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_redirect(request: Request) -> Response:
    """Where `LoginRequired` leads: 401 for a live refresh, else the login form."""
    if request.headers.get(LIVE_HEADER):
        return Response("login required", status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The login form."""
    return render(request, "login.html", {"next": safe_next(next)})


@router.post("/login")
async def login(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"
) -> Response:
    """Check the token; on success set the session cookie and go on."""
    check_origin(request)
    token = token.strip()
    try:
        caller = await identify(request.app.state, token)
        refuse_agents(caller.role)
    except Unauthorized as exc:
        context = {"next": safe_next(next), "error": exc.message}
        return render(request, "login.html", context, status_code=401)
    except Refused as exc:
        context = {"next": safe_next(next), "error": exc.message}
        return render(request, "login.html", context, status_code=exc.status)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(_: PosterDep) -> Response:
    """End the session (of any role: an agent token's session may end too)."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
