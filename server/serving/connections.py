"""How `farmhand server` holds connections: read timeouts for slow clients, a connection cap.

uvicorn closes a connection idle *between* requests (`timeout_keep_alive`) and answers 503
above `limit_concurrency` connections, but has no timeout while a request is read: a client
that sends half a request line, or a body one byte a minute, keeps its connection (and a
place under the cap) for ever. `ReadTimeouts` adds two, to uvicorn's own HTTP protocol class
(httptools when installed, else h11):

- `header_timeout`: from the connection's start (or a request's first byte) to the end of the
  request's headers; an absolute deadline, so trickling bytes does not extend it.
- `body_timeout`: the longest pause in a request body that is still arriving; it restarts
  with every chunk, so a large upload may take as long as it needs while it moves.

A request read in full is never timed: a long-poll claim waiting for work, or a slow response,
keeps its connection. Nor is a pause the server itself causes (flow control while the app is
busy, or a client waiting for `100 Continue`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from farmhand.server.settings import Settings

log = logging.getLogger("farmhand.server")

#: File descriptors the server needs besides its client connections (database pool, blobs,
#: logs, the thread pool's files).
_SPARE_FILES = 256


class ReadTimeouts:
    """Mixin for a uvicorn HTTP protocol class (see the module docstring). Only the protocol's
    stable surface is used: `connection_made`, `data_received`, `connection_lost`, and the
    `cycle` (its `more_body`, `response_complete`, `waiting_for_100_continue`) and `flow`."""

    header_timeout = 20.0
    body_timeout = 60.0

    # The protocol's own attributes, typed loosely: the mixin serves httptools and h11 alike.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    flow: Any
    client: Any

    _phase: str | None = None  # "headers", "body", or None: nothing is being waited for
    _deadline = 0.0
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline: a connection that sends nothing is closed too."""
        super().connection_made(transport)  # type: ignore[misc]
        self._watch("headers", self.header_timeout)

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does, then see what the request is waiting for now."""
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            self._stop()
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            # A request whose headers are not complete yet: keep its (absolute) deadline.
            if self._phase != "headers":
                self._watch("headers", self.header_timeout)
        elif cycle.more_body:
            self._watch("body", self.body_timeout)  # progress: the pause starts now
        else:
            self._stop()  # read in full: the app may take as long as it likes

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the timer with the connection."""
        self._stop()
        super().connection_lost(exc)  # type: ignore[misc]

    def _watch(self, phase: str, seconds: float) -> None:
        # One timer per connection, moved lazily: progress only pushes the deadline, and the
        # timer re-arms itself when it fires early (no timer churn per body chunk).
        self._phase = phase
        self._deadline = self.loop.time() + seconds
        timer = self._timer
        if timer is not None and timer.when() > self._deadline:
            timer.cancel()  # due after the new deadline (a header deadline, say): bring it in
            timer = None
        if timer is None:
            self._timer = self.loop.call_at(self._deadline, self._expired)

    def _stop(self) -> None:
        self._phase = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        transport = self.transport
        if self._phase is None or transport.is_closing() or transport.get_protocol() is not self:
            return  # done, closed, or handed over (an upgrade)
        now = self.loop.time()
        cycle = self.cycle
        held_back = (
            self._phase == "body"
            and cycle is not None
            and not cycle.response_complete
            and (self.flow.read_paused or cycle.waiting_for_100_continue)
        )
        if held_back:  # the server is not reading the body yet: not the client's pause
            self._deadline = now + self.body_timeout
        if now < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        what = "request headers" if self._phase == "headers" else "more of the request body"
        seconds = self.header_timeout if self._phase == "headers" else self.body_timeout
        log.info("closed the connection from %s: no %s within %g s", self.client, what, seconds)
        self._phase = None
        transport.close()


def protocol_class(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with `ReadTimeouts`."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    namespace = {"header_timeout": header_timeout, "body_timeout": body_timeout}
    return type("FarmhandHTTPProtocol", (ReadTimeouts, AutoHTTPProtocol), namespace)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The `uvicorn.run` options for `settings`' timeouts and connection cap."""
    return {
        "http": protocol_class(settings.header_timeout, settings.body_timeout),
        "limit_concurrency": settings.max_connections,
    }


def raise_open_files_limit(connections: int) -> int | None:
    """Raise this process's soft open-files limit to hold `connections` (up to the hard
    limit; many systems start services at 1,024). Returns the soft limit now in force, or
    None where there is no such limit (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _SPARE_FILES
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft < connections + _SPARE_FILES:
        log.warning(
            "the open-files limit (%d) is below --max-connections %d + %d: raise it "
            "(ulimit -n, LimitNOFILE=) or lower --max-connections",
            soft,
            connections,
            _SPARE_FILES,
        )
    return soft
