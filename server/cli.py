"""`farmhand server`: registered under the `farmhand.commands` entry points, so the agent's
CLI dispatches to it without importing the server."""

from __future__ import annotations

import argparse
import gc
import logging
import logging.config
import os
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from farmhand.server import migrate
from farmhand.server.app import create_app, prepare_data_dir
from farmhand.server.db import Database
from farmhand.server.errors import SchemaError, StorageError
from farmhand.server.serving import connections, logs
from farmhand.server.settings import Settings
from farmhand.server.storage.blobs import open_store


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `farmhand server`."""
    p = argparse.ArgumentParser(prog="farmhand server", description="Run the farmhand server.")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 or the "
        "cluster-facing address for agents on compute nodes)",
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--data-dir", help="database and tokens (default: $FARMHAND_DATA_DIR or ./farmhand-data)"
    )
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    p.add_argument("--lease-ttl", type=float, help="seconds a lease lives unrenewed (60)")
    p.add_argument(
        "--umask",
        metavar="MODE",
        help="for everything the server writes: data dir, database, tokens, blobs "
        "(default: $FARMHAND_UMASK or 077, private to the server's user)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        help="seconds a client has to send a request's headers before its connection is "
        "closed (20; $FARMHAND_HEADER_TIMEOUT)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        help="seconds a request body may stall before its connection is closed; requests "
        "read in full, such as long-poll claims, are never cut (60; $FARMHAND_BODY_TIMEOUT)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help="connections (or requests in progress) above which requests get 503 "
        "(8192; $FARMHAND_MAX_CONNECTIONS)",
    )
    p.add_argument(
        "--migrate-only",
        action="store_true",
        help="bring the database schema to this version's head, then exit",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="the least severe messages logged (default info)",
    )
    p.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="text, or one JSON object per line (default: $FARMHAND_LOG_FORMAT or text)",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Run the server until it is interrupted."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(
            data_dir=args.data_dir,
            database_url=args.database_url,
            lease_ttl=args.lease_ttl,
            log_format=args.log_format,
            umask=args.umask,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            max_connections=args.max_connections,
        )
    except ValidationError as exc:  # a bad FARMHAND_* value or flag: one line each, no trace
        for err in exc.errors():
            name = "FARMHAND_" + "_".join(str(p) for p in err["loc"]).upper()
            message = str(err["msg"]).removeprefix("Value error, ")
            print(f"farmhand server: {name}: {message}", file=sys.stderr)
        return 1
    # Process-wide, before anything is written: SQLite's journals, staged uploads, backups
    # and whatever a library creates are covered as well as the files created on purpose.
    os.umask(settings.umask)
    if args.migrate_only:
        return _migrate_only(settings)
    try:  # a bad storage URL, a missing bucket or refused credentials: one clear line
        open_store(settings.storage_url, settings.data_dir, settings=settings)
    except (StorageError, ValueError) as exc:
        print(f"farmhand server: cannot open the blob store: {exc}", file=sys.stderr)
        return 1
    # Configured here rather than by uvicorn, so the first line is in the chosen format too.
    logging.config.dictConfig(logs.config(settings.log_format, args.log_level))
    logging.getLogger("farmhand.server").info(
        "farmhand server on http://%s:%d (status pages at /, API docs at /docs), data in %s",
        args.host,
        args.port,
        settings.data_dir,
    )
    connections.raise_open_files_limit(settings.max_connections)
    app = create_app(settings)
    # What is built by now (modules, routes, validators) lives as long as the process: out
    # of the collector's sight, its full collections walk only what requests made since.
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        **connections.uvicorn_options(settings),
    )
    return 0


def _migrate_only(settings: Settings) -> int:
    prepare_data_dir(settings)
    db = Database(settings.resolved_database_url)
    try:
        done = migrate.upgrade(db.engine)
    except (SchemaError, OperationalError) as exc:
        reason = str(exc).splitlines()[0]
        print(f"farmhand server: cannot migrate the database: {reason}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    if done.changed:
        print(f"database schema migrated from {done.before or 'empty'} to {done.after}")
    else:
        print(f"database schema is up to date (revision {done.after})")
    return 0
