"""`create_app(settings)`: the FastAPI application, its lifespan and its error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from farmhand import wire
from farmhand.server import auth, migrate, pages
from farmhand.server.db import Database
from farmhand.server.errors import FarmhandError, StorageError
from farmhand.server.queue import agents, held_leases, leases
from farmhand.server.queue.waking import outlook
from farmhand.server.queue.waking.reader import LoopReader
from farmhand.server.queue.waking.relay import start_relay
from farmhand.server.queue.waking.wakeups import Wakeup
from farmhand.server.routes import agents as agent_routes
from farmhand.server.routes import allocations as allocation_routes
from farmhand.server.routes import bundles as bundle_routes
from farmhand.server.routes import campaigns as campaign_routes
from farmhand.server.routes import charts as chart_routes
from farmhand.server.routes import leases as lease_routes
from farmhand.server.routes import openapi
from farmhand.server.routes import records as record_routes
from farmhand.server.routes import results as result_routes
from farmhand.server.routes import runs as run_routes
from farmhand.server.routes.snapshots import batches as snapshot_batch_routes
from farmhand.server.routes.snapshots import single as snapshot_routes
from farmhand.server.serving import metrics
from farmhand.server.serving.gate import Gate
from farmhand.server.serving.logs import RequestIdMiddleware
from farmhand.server.settings import Settings
from farmhand.server.storage.blobs import open_store
from farmhand.server.tables import utcnow
from farmhand.wire import ErrorCode

log = logging.getLogger("farmhand.server")

try:
    VERSION = version("farmhand")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0+unknown"


def create_app(settings: Settings) -> FastAPI:
    """Build the server application for `settings` (nothing happens at import time)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_open, app, settings)
        app.state.wakeup.bind(asyncio.get_running_loop())
        # Other replicas' wakeups (PostgreSQL LISTEN/NOTIFY); None keeps them in-process.
        app.state.relay = start_relay(app.state.wakeup, settings.resolved_notify_url)
        db: Database = app.state.db
        if not db.is_sqlite:  # SQLite reads small things on the event loop already
            app.state.reader = LoopReader(settings.resolved_database_url, db.engine.dialect)
        sweeper = asyncio.create_task(_sweep(app, settings))
        watch = asyncio.create_task(_watch_queue(app, settings))
        hear = asyncio.create_task(_hear_claimers(app, settings))
        try:
            yield
        finally:
            if app.state.relay is not None:
                await app.state.relay.stop()
            for task in (sweeper, watch, hear):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if app.state.reader is not None:
                await app.state.reader.close()
            app.state.db.dispose()

    app = FastAPI(
        title="farmhand",
        version=VERSION,
        summary="Leases for ten thousand to ten million calculations on HPC machines.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served by `pages`, from local files (no CDN)
        redoc_url=None,
        openapi_tags=openapi.TAGS,
    )
    app.state.settings = settings
    app.state.wakeup = Wakeup()
    app.state.token_cache = {}
    app.state.claimers = set()  # agents whose claims arrived since `_hear_claimers` last ran
    app.state.reader = None  # PostgreSQL: a LoopReader once started
    # The agents' routes first: FastAPI tries the routes in order, and a claim or a report
    # matched after the 40 routes ahead of them spent ~10 % of its CPU on the search.
    for router in (
        lease_routes.router,
        run_routes.router,
        agent_routes.router,
        snapshot_batch_routes.router,
        snapshot_routes.router,
        campaign_routes.router,
        campaign_routes.tokens,
        record_routes.router,
        result_routes.router,
        chart_routes.router,
        bundle_routes.router,
        allocation_routes.router,
    ):
        # Each route lists its own error responses (routes/openapi.py: `errors(...)`).
        app.include_router(router, prefix=wire.API_PREFIX)
    _add_error_handlers(app)
    # Token (401) and size (413) checks before any body is read: server/serving/gate.py.
    app.add_middleware(
        Gate,
        state=app.state,
        limit=settings.max_body_bytes,
        snapshot_limit=settings.max_snapshot_bytes,
    )
    pages.mount(app)  # status pages, /static, /docs, /redoc
    metrics.mount(app)  # /metrics
    app.add_middleware(RequestIdMiddleware)  # outermost: even a 413 carries X-Request-ID

    @app.get("/healthz", response_model=wire.Health, tags=["health"], summary="Liveness")
    def healthz(request: Request) -> wire.Health:
        """The server is up and its database answers."""
        db: Database = request.app.state.db
        with db.read() as session:
            session.execute(text("SELECT 1"))
        return wire.Health(status="ok", version=VERSION, database=db.dialect)

    return app


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory and an SQLite database file with the private modes
    (`settings.umask`), whatever the process's umask: SQLite gives its -wal and -shm files
    the database file's mode, and would create the file itself with 0644."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=settings.dir_mode)
    url = settings.resolved_database_url
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        path = path.split("?", 1)[0]
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, settings.file_mode))
    for existing in (settings.data_dir, path):  # made by an older version, or by hand
        with contextlib.suppress(OSError):
            mode = os.stat(existing).st_mode & 0o777 if existing else 0
            if mode & settings.umask:
                log.warning(
                    "%s is open to others (mode %04o, FARMHAND_UMASK %03o); chmod go-rwx %s",
                    existing,
                    mode,
                    settings.umask,
                    existing,
                )


def _open(app: FastAPI, settings: Settings) -> None:
    prepare_data_dir(settings)
    db = Database(settings.resolved_database_url)
    try:
        with migrate.startup_lock(db.engine):
            _prepare(db, settings)
    except Exception as exc:
        log.error("cannot start on %s: %s", db.dialect, exc)
        db.dispose()
        raise
    try:
        app.state.blobs = open_store(settings.storage_url, settings.data_dir, settings=settings)
    except (StorageError, ValueError) as exc:
        log.error("cannot open the blob store: %s", exc)
        db.dispose()
        raise
    app.state.db = db


def _prepare(db: Database, settings: Settings) -> None:
    """What every start does once: schema to head, admin token, grace for live leases."""
    migrate.upgrade(db.engine)
    auth.bootstrap_admin(db, settings.data_dir, settings.admin_token)
    with db.write() as session:
        grace = settings.resolved_startup_grace
        extended = held_leases.grant_grace(session, now=utcnow(), grace=grace)
    if extended:
        log.info(
            "gave %d live leases a %.0f s grace period after start",
            extended,
            settings.resolved_startup_grace,
        )


async def _watch_queue(app: FastAPI, settings: Settings) -> None:
    """While claims wait, look once per `claim_poll_interval` whether any claim could take
    something now (a lease ran out; records made ready without a wakeup, such as another
    replica's when LISTEN/NOTIFY is off) and wake them if so: one read for the whole
    process, where each waiting claim used to re-run a write transaction (issue 16).

    It wakes every waiter, not a count: it is also the backstop of partial wakeups
    (`Wakeup.notify(count)`), whose woken claims may not fit the record they were woken for
    while others that do sleep on; this look hands such a record out within one interval.

    A look that finds nothing also says until when nothing can fall due (`Wakeup.settle`):
    at most two intervals, less when a retry delay or a lease ends sooner. Until then, or
    the next wakeup, waiting claims skip their attempts (`Wakeup.quiet`)."""
    db: Database = app.state.db
    wakeup = app.state.wakeup
    interval = settings.claim_poll_interval

    def look(conn: Connection) -> float | None:
        """None if a claim could take something now, else for how many seconds none can."""
        now = utcnow()
        if outlook.claimable(conn, now=now):
            return None
        due = outlook.due_next(conn, now=now)
        quiet = 2 * interval  # the next look comes before then
        return quiet if due is None else min(quiet, (due - now).total_seconds())

    while True:
        await asyncio.sleep(interval)
        if not wakeup.waiting:
            continue
        seen, began = wakeup.generation, time.monotonic()
        try:
            quiet = await db.run_read(look, small=False)  # may scan waiting retries
        except Exception:  # keep watching whatever one look hit
            log.exception("the queue watch failed")
            continue
        if quiet is None:
            wakeup.wake()
        else:
            wakeup.settle(seen, began + quiet)


#: Most seconds between a claim's arrival and its agent's `last_heartbeat` moving (less with
#: a lease TTL under 30 s: a sixth of it).
HEAR_EVERY = 5.0


async def _hear_claimers(app: FastAPI, settings: Settings) -> None:
    """Every few seconds, one statement marks the agents whose claims arrived as heard from
    (`agents.seen`), so an agent that holds no lease needs no heartbeat while it claims:
    1,000 idle agents sent 50 heartbeats a second (issue 16)."""
    db: Database = app.state.db
    claimers: set[int] = app.state.claimers
    while True:
        await asyncio.sleep(min(HEAR_EVERY, settings.lease_ttl / 6))
        if not claimers:
            continue
        heard = set(claimers)
        claimers.clear()  # in place: requests under way hold this set

        def write(conn: Connection, heard: set[int] = heard) -> int:
            return agents.seen(conn, agent_ids=heard, now=utcnow())

        try:
            await db.run_write(write, items=len(heard))
        except Exception:  # try them again next time
            claimers.update(heard)
            log.exception("marking claiming agents as heard from failed")


async def _sweep(app: FastAPI, settings: Settings) -> None:
    """Expire lost leases in the background (claims also do it themselves)."""
    db: Database = app.state.db

    def once() -> leases.Expired:
        with db.write() as session:
            return leases.expire(session, now=utcnow())

    while True:
        await asyncio.sleep(settings.sweep_interval)
        try:
            expired = await run_in_threadpool(once)
        except Exception:  # keep sweeping whatever one pass hit
            log.exception("lease sweep failed")
            continue
        if expired.requeued or expired.failed:
            log.info("lease sweep: %d re-queued, %d failed", expired.requeued, expired.failed)
        if expired.requeued:
            app.state.wakeup.notify(expired.requeued)


def _error(
    status: int,
    detail: str,
    code: str,
    errors: list | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = wire.ErrorBody(detail=detail, code=code, errors=errors)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FarmhandError)
    async def domain_error(_: Request, exc: FarmhandError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                reason = (err.get("ctx") or {}).get("error", "")
                problems.append(f"request body is not valid JSON ({reason})".replace(" ()", ""))
                continue
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        detail = "invalid request: " + "; ".join(problems[:5])
        if len(problems) > 5:
            detail += f"; and {len(problems) - 5} more"
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()[:50]
        ]
        return _error(422, detail, ErrorCode.invalid, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSED_BODY:
            # FastAPI's answer to a body json.loads cannot even read (not UTF-8, nested past
            # the recursion limit): the same 422 as any other body that is not JSON.
            why = "not UTF-8" if isinstance(exc.__cause__, UnicodeError) else "unreadable"
            return _error(422, f"request body is not valid JSON ({why})", ErrorCode.invalid)
        headers = dict(exc.headers or {})  # e.g. `WWW-Authenticate` on a 401
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        code = getattr(exc, "code", ErrorCode.http_error)  # the gate's 413 says "too_large"
        return _error(exc.status_code, str(exc.detail), code, headers=headers)


_UNPARSED_BODY = "There was an error parsing the body"
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path, found by asking the routes. Starlette's
    own `Allow` names only the methods of the first route matching the path (GET and POST
    /campaigns are two routes), and FastAPI's included routers do not list theirs."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)
