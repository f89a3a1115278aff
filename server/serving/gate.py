"""The gate every HTTP request passes before the app reads its body.

Two checks, in one plain ASGI middleware (it wraps every claim and run report, so it must cost
microseconds, not a task switch):

- **token**: a request under `/api/v1` must carry a live bearer token. It is looked up here —
  the same lookup and cache as the pages (`routes/deps.py: identify`) — and a request without
  one gets 401 before a single body byte is received. The caller is left in the scope for the
  route's role check (403), which so never looks the token up twice.
- **size**: a body may not pass `max_body_bytes` (snapshot uploads: `max_snapshot_bytes`;
  the pages' forms, outside `/api/v1`: 64 KiB). A declared `Content-Length` over the limit
  is refused at once; a chunked body is counted as it streams in, and the request is answered
  413 the moment the count passes the limit — the rest is never read.

An early refusal of a request whose body is still unread closes the connection, so the client
cannot go on sending into it.
"""

from __future__ import annotations

from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farmhand import wire
from farmhand.server.errors import Unauthorized
from farmhand.server.routes.deps import CALLER, identify
from farmhand.wire import ErrorBody, ErrorCode

_API = wire.API_PREFIX + "/"
_SNAPSHOTS = wire.API_PREFIX + "/snapshots/"
_CLOSE = (b"connection", b"close")
#: The body limit outside /api/v1: the status pages post small forms only.
FORM_LIMIT = 64 * 1024


class BodyTooLarge(HTTPException):
    """A request body that passed its limit while streaming in (413). An `HTTPException`, so
    FastAPI's body parsing lets it through to the app's handler instead of turning it into a
    400; `code` is what that handler puts in the error body."""

    code = ErrorCode.too_large

    def __init__(self, limit: int):
        detail = f"request body is over the limit of {limit} bytes"
        super().__init__(413, detail, headers={"connection": "close"})


class Gate:
    """The token and size checks above, for `app` (the FastAPI app's `state` holds the token
    cache and the database)."""

    def __init__(self, app: ASGIApp, *, state: State, limit: int, snapshot_limit: int) -> None:
        self.app = app
        self.state = state
        self.limit = limit
        self.snapshot_limit = snapshot_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request early (401, 413) or run it with its body counted."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = length = b""
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        pending = chunked or length not in (b"", b"0")  # a body may still be on its way
        path = _route_path(scope)
        if path.startswith(_API):
            try:
                scope[CALLER] = await identify(self.state, _bearer(authorization))
            except Unauthorized as exc:
                headers = [(b"www-authenticate", b"Bearer")]
                await _refuse(send, 401, exc.message, exc.code, pending, headers)
                return
            limit = self.limit
            if scope["method"] == "PUT" and path.startswith(_SNAPSHOTS):
                limit = self.snapshot_limit
        else:  # the pages' forms (the login form is read before anyone is known)
            limit = min(self.limit, FORM_LIMIT)
        if chunked:
            await self._counted(scope, receive, send, limit)
        elif length.isdigit() and int(length) > limit:
            detail = f"request body is {int(length)} bytes; the limit is {limit}"
            await _refuse(send, 413, detail, BodyTooLarge.code, pending)
        else:  # the HTTP parser delivers exactly Content-Length bytes (none without one)
            await self.app(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app with a `receive` that raises `BodyTooLarge` past `limit` bytes."""
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:  # raised where no exception handler of the app saw it
            if started:
                raise
            await _refuse(send, 413, exc.detail, exc.code, True)


def _route_path(scope: Scope) -> str:
    """The path the app routes on: without the `root_path` a proxy mounts the server under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _bearer(authorization: bytes) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (as FastAPI's `HTTPBearer`)."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


async def _refuse(
    send: Send,
    status: int,
    detail: str,
    code: str,
    close: bool,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with the API's error body; `close` the connection when a body is unread."""
    body = ErrorBody(detail=detail, code=code).model_dump_json(exclude_none=True).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or ()),
    ]
    if close:
        head.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
