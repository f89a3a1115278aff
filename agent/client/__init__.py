"""The typed HTTP client and its exceptions (files in agent/client/): what scripts, notebooks,
the CLI and the agent runtime use to talk to a server.

    from farmhand.client import FarmhandClient   # also farmhand.Client

Exceptions, all under `FarmhandError` (the tree is in `farmhand.client.errors`):
`UsageError` (the call is wrong; nothing was sent), `ServerUnavailable` (unreachable or
timed out: retry later) and `ApiError` (the server refused), with its kinds `BadRequest`,
`Unauthorized`, `Forbidden`, `NotFound`, `Conflict`.
"""

from farmhand.client.api import FarmhandClient
from farmhand.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    FarmhandError,
    Forbidden,
    NotFound,
    ServerUnavailable,
    Unauthorized,
    UsageError,
)

Client = FarmhandClient

__all__ = [
    "ApiError",
    "BadRequest",
    "Client",
    "Conflict",
    "FarmhandClient",
    "FarmhandError",
    "Forbidden",
    "NotFound",
    "ServerUnavailable",
    "Unauthorized",
    "UsageError",
]
