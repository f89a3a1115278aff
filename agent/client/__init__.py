"""The typed HTTP client and its exceptions (files in agent/client/): what scripts, notebooks,
the CLI and the agent runtime use to talk to a server.

    from farmhand.client import FarmhandClient   # also farmhand.Client

Exceptions, all under `FarmhandError` (the tree is in `farmhand.client.errors`):
`UsageError` (the call is wrong; nothing was sent), `ServerUnavailable` (unreachable or
timed out: retry later) and `ApiError` (the server refused), with its kinds `BadRequest`,
`Unauthorized`, `Forbidden`, `NotFound`, `Conflict`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from farmhand.client.api import FarmhandClient
    from farmhand.client.api import FarmhandClient as Client
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

# Imported on first use: an agent given its token in the environment imports the stdlib-only
# `farmhand.client.credentials` and starts itself again before anything else (`python -m
# farmhand`); loading httpx and the wire models first would cost that start twice.
_LAZY = {name: "farmhand.client.errors" for name in __all__}
_LAZY.update(Client="farmhand.client.api", FarmhandClient="farmhand.client.api")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'farmhand.client' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return getattr(module, "FarmhandClient" if name == "Client" else name)
