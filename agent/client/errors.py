"""The exceptions of the farmhand client, and the mapping from HTTP answers to them.

::

    FarmhandError            anything the client raises
    ├── UsageError           the call itself is wrong (a filter that does not parse, a sweep
    │                        placeholder that is no param); nothing was sent. Also a ValueError
    ├── ServerUnavailable    the server could not be reached or timed out (retry later)
    └── ApiError             the server answered 4xx/5xx; `.status` and `.detail` say why
        ├── BadRequest       400, 413, 422: the request was malformed; nothing changed
        ├── Unauthorized     401: missing or wrong token
        ├── Forbidden        403: the token's role may not do this
        ├── NotFound         404
        └── Conflict         409: a state conflict or a stale lease token; nothing changed
"""

from __future__ import annotations

import httpx

from farmhand import wire

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "FarmhandError",
    "Forbidden",
    "NotFound",
    "ServerUnavailable",
    "Unauthorized",
    "UsageError",
    "raise_for",
]


class FarmhandError(Exception):
    """Base of every error this client raises."""


class UsageError(FarmhandError, ValueError):
    """The call is wrong before anything is sent: a filter that does not parse, a sweep whose
    placeholder is no param, a file that cannot be read."""


class ServerUnavailable(FarmhandError):
    """The server could not be reached (connection refused, timeout, DNS)."""


class ApiError(FarmhandError):
    """The server answered with an error status."""

    def __init__(self, status: int, detail: str, code: str = "error"):
        super().__init__(f"{detail} (HTTP {status})")
        self.status = status
        self.detail = detail
        self.code = code


class BadRequest(ApiError):
    """400/413/422: the request was rejected as malformed; nothing changed."""


class Unauthorized(ApiError):
    """401: the token is missing or unknown."""


class Forbidden(ApiError):
    """403: the token's role may not call this endpoint."""


class NotFound(ApiError):
    """404: no such campaign, record, run or agent."""


class Conflict(ApiError):
    """409: the thing is not in a state that allows this (or the lease token is stale)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: BadRequest,
}


def raise_for(response: httpx.Response) -> None:
    """Return for a 2xx answer; raise the `ApiError` subclass for its status otherwise."""
    if response.is_success:
        return
    try:
        body = wire.ErrorBody.model_validate(response.json())
        detail, code = body.detail, body.code
    except Exception:
        detail, code = response.text.strip()[:500] or response.reason_phrase, "error"
    raise _BY_STATUS.get(response.status_code, ApiError)(response.status_code, detail, code)
