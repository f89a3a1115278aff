"""Domain errors. Data functions raise these; `app.py` maps them to HTTP in one place."""

from __future__ import annotations

from farmhand.wire import ErrorCode


class FarmhandError(Exception):
    """Base of the server's domain errors; the message is shown to the user as is."""

    status = 400
    code = ErrorCode.bad_request

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(FarmhandError):
    """No such thing (404)."""

    status = 404
    code = ErrorCode.not_found


class Conflict(FarmhandError):
    """The thing is not in a state that allows this (409)."""

    status = 409
    code = ErrorCode.conflict


class InvalidTransition(Conflict):
    """A record state change the state table does not allow (409)."""

    code = ErrorCode.invalid_transition


class StaleLease(Conflict):
    """A run mutation whose lease token is no longer the live one (409)."""

    code = ErrorCode.stale_lease


class Invalid(FarmhandError):
    """Semantically wrong input that passed schema validation (422)."""

    status = 422
    code = ErrorCode.invalid


class Unauthorized(FarmhandError):
    """Missing or unknown bearer token (401)."""

    status = 401
    code = ErrorCode.unauthorized


class Forbidden(FarmhandError):
    """The token's role may not do this (403)."""

    status = 403
    code = ErrorCode.forbidden


class SchemaError(FarmhandError):
    """The database's schema cannot be used by this version of farmhand (startup refuses)."""

    status = 500
    code = ErrorCode.schema


class StorageError(FarmhandError):
    """The blob store cannot be used: a missing bucket, refused credentials, no endpoint
    (startup refuses, naming the bucket and endpoint)."""

    status = 503
    code = ErrorCode.storage
