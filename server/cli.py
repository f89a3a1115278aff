"""`farmhand server`: registered under the `farmhand.commands` entry points, so the agent's
CLI dispatches to it without importing the server."""

from __future__ import annotations

import argparse
import logging
import logging.config
from collections.abc import Sequence

import uvicorn

from farmhand.server import logs
from farmhand.server.app import create_app
from farmhand.server.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `farmhand server`."""
    p = argparse.ArgumentParser(prog="farmhand server", description="Run the farmhand server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--data-dir", help="database and tokens (default: $FARMHAND_DATA_DIR or ./farmhand-data)"
    )
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    p.add_argument("--lease-ttl", type=float, help="seconds a lease lives unrenewed (60)")
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
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
    settings = Settings.from_env(
        data_dir=args.data_dir,
        database_url=args.database_url,
        lease_ttl=args.lease_ttl,
        log_format=args.log_format,
    )
    # Configured here rather than by uvicorn, so the first line is in the chosen format too.
    logging.config.dictConfig(logs.config(settings.log_format, args.log_level))
    logging.getLogger("farmhand.server").info(
        "farmhand server on http://%s:%d (status pages at /, API docs at /docs), data in %s",
        args.host,
        args.port,
        settings.data_dir,
    )
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
    )
    return 0
