"""Request IDs and log formats.

Every HTTP request gets an id: the caller's `X-Request-ID` when it is a sane token, else a new
one. The id is echoed in the response and attached to every log line written while the
request runs (the context variable follows the request into the thread pool). `farmhand
server --log-format json` writes one JSON object per line, for log collectors.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
# Accept what proxies and tracers send (UUIDs, hex, W3C trace ids) but nothing that could
# forge a log line or a header: no spaces, quotes or control characters.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
FORMATS = ("text", "json")

request_id: ContextVar[str | None] = ContextVar("farmhand_request_id", default=None)


class RequestIdMiddleware:
    """Give each request an id and echo it in `X-Request-ID`.

    Plain ASGI rather than `BaseHTTPMiddleware`: it wraps every claim and heartbeat, so it
    must cost microseconds, not a task switch.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Run the request with its id set; add the header to the response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == _HEADER_KEY:
                candidate = value.decode("latin-1")
                if _ACCEPTABLE.fullmatch(candidate):
                    rid = candidate
                break
        rid = rid or uuid.uuid4().hex
        echoed = (_HEADER_KEY, rid.encode())

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Attach the current request id (or None) to every record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always passes the record; only adds the attribute."""
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """`time level logger message [request_id=…]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line, with the request id appended when there is one."""
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request_id={rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line; uvicorn's access lines get their fields split out."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _, status = args
            entry.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's and farmhand's loggers in `log_format`."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    level = level.upper()
    handler = {"handlers": ["default"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            "uvicorn": handler,
            "uvicorn.error": {"level": level},
            "uvicorn.access": handler,
            "farmhand": handler,
        },
    }
