"""`farmhand agent`: its options, and running an agent until it stops.

Kept apart from `cli.py` because the agent has many knobs (slots, prefetch, polling, walltime,
checkpoint, disk guard, outbox, live display, runners and resources, campaign and dataset
filters) and the rest of the CLI needs none of them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farmhand import wire
from farmhand.cli import offer, refs
from farmhand.cli.base import token_of
from farmhand.client import credentials
from farmhand.runtime.files.extract import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES

__all__ = ["add_parser", "cmd_agent"]

#: Logging for plain (non-display) runs: one structured line per event.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
#: The agent's files are its user's alone unless --umask or FARMHAND_UMASK say otherwise.
DEFAULT_UMASK = 0o077


class AgentUsageError(Exception):
    """A bad `farmhand agent` option; the CLI prints it as a one-line error."""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `farmhand agent` and its options to the subcommand parsers `sub`."""
    p = sub.add_parser("agent", parents=parents, help="run an agent")
    p.add_argument(
        "--slots",
        type=_count(1),
        help="records run at once (default: the cores it has, at least 1)",
    )
    p.add_argument(
        "--prefetch",
        type=_prefetch,
        default=None,
        metavar="M|auto",
        help="leases claimed and staged ahead, waiting for a free slot (default auto: as "
        "many as the slots while the recent commands are short, else none)",
    )
    p.add_argument("--workdir", default="farmhand-work", help="where run directories go")
    p.add_argument("--name", help="agent name (default: HOST-PID)")
    p.add_argument(
        "--campaign",
        action="append",
        metavar="NAME[:VERSION]",
        help="claim only from this campaign (NAME: its latest version at start; or an id); "
        "repeatable",
    )
    p.add_argument(
        "--dataset", action="append", metavar="X", help="claim only this dataset; repeatable"
    )
    p.add_argument(
        "--exit-when-idle",
        type=_seconds,
        metavar="SECONDS",
        help="exit after this many seconds with nothing to do",
    )
    p.add_argument(
        "--poll",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help=f"longest long poll and idle interval (default 30, at most {wire.MAX_WAIT_SECONDS:g})",
    )
    p.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=300.0,
        metavar="DURATION",
        help="how long to keep trying a server that cannot be reached at start, with backoff "
        "(default 300s: a batch job's agent outlasts a server restart)",
    )
    p.add_argument(
        "--walltime",
        type=_seconds,
        metavar="DURATION",
        help="this agent's time from its start (90m, 2h, HH:MM:SS); under Slurm the job's end "
        "is found by itself",
    )
    p.add_argument(
        "--walltime-margin",
        type=_seconds,
        default=120.0,
        metavar="DURATION",
        help="start the walltime drain this long before the end (default 120s)",
    )
    p.add_argument(
        "--checkpoint-signal",
        type=_signal,
        default=signal.SIGTERM,
        metavar="SIGNAL",
        help="sent to running commands at the walltime drain (default TERM; e.g. USR1)",
    )
    p.add_argument(
        "--checkpoint-grace",
        type=_seconds,
        default=60.0,
        metavar="DURATION",
        help="how long the drain waits for commands to checkpoint and exit (default 60s)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=_seconds,
        default=300.0,
        metavar="DURATION",
        help="upload each run's $FARMHAND_CHECKPOINT_DIR this often when it changed; 0: only "
        "when the run fails or is given back (default 300s; run_args checkpoint_interval wins)",
    )
    p.add_argument(
        "--keep-failed-workdir",
        action="store_true",
        help="keep a failed run's directory on the node after its report (default: removed "
        "once the server has the report and the archive)",
    )
    p.add_argument(
        "--max-extract-bytes",
        type=_size,
        default=DEFAULT_MAX_BYTES,
        metavar="SIZE",
        help="refuse to unpack a checkpoint or parent's archive holding more (default 64G)",
    )
    p.add_argument(
        "--max-extract-files",
        type=_count(1),
        default=DEFAULT_MAX_FILES,
        metavar="N",
        help="refuse to unpack a checkpoint or parent's archive of more members (default 1000000)",
    )
    p.add_argument(
        "--cache-limit",
        type=_cache_limit,
        default=None,
        metavar="SIZE",
        help="keep at most this much in WORKDIR/cache beyond what runs use, evicting the "
        "least recently used snapshots (e.g. 20G; 0: only the newest download; default: no limit)",
    )
    p.add_argument(
        "--term-grace",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="SIGTERM to SIGKILL grace when a command is terminated (default 5)",
    )
    p.add_argument(
        "--disk-limit",
        type=_percent,
        metavar="PERCENT",
        help="claim nothing while the workdir's filesystem is fuller than this (e.g. 90%%)",
    )
    p.add_argument(
        "--outbox",
        type=Path,
        metavar="DIR",
        help="where finished reports wait for the server (default: WORKDIR/outbox)",
    )
    p.add_argument(
        "--display",
        action="store_true",
        help="draw a live panel (needs: pip install 'farmhand[display]')",
    )
    p.add_argument(
        "--umask",
        type=_umask,
        default=None,
        metavar="MODE",
        help="the agent's own umask: run directories, outbox, cache (default: $FARMHAND_UMASK "
        "or 077, private to you); commands run with the umask the agent was started with",
    )
    p.add_argument(credentials.SECRETS_FD_OPTION, type=int, help=argparse.SUPPRESS)
    offer.add_arguments(p)
    p.add_argument(
        "--log-level",
        default="info",
        choices=["error", "warning", "info", "debug"],
        help="the least severe messages logged (default info)",
    )
    p.set_defaults(func=cmd_agent)
    return p


def cmd_agent(args: argparse.Namespace) -> int:
    """Run an agent until it is stopped, drained or idle."""
    # Imported here, not for `--help` or a bad option: the runtime, httpx and the client.
    from farmhand.client import FarmhandClient
    from farmhand.client.retry import retry_unavailable
    from farmhand.runtime.agent import Agent, AgentConfig, install_signal_handlers

    try:  # before any server is asked: a wrong definition or flag stops the agent at once
        runners, resources = offer.from_args(args)
    except offer.OfferError as exc:
        raise AgentUsageError(str(exc)) from exc
    if args.list_runners:
        print(offer.listing(runners, resources))
        return 0
    server = args.server or os.environ.get("FARMHAND_SERVER")
    if not server:
        raise AgentUsageError("no server: pass --server URL or set FARMHAND_SERVER")
    if args.poll > wire.MAX_WAIT_SECONDS:
        raise AgentUsageError(f"--poll is at most {wire.MAX_WAIT_SECONDS:g} seconds")
    display = None
    if args.display:
        from farmhand.cli import display

        problem = display.unavailable()
        if problem:
            raise AgentUsageError(problem)
    level = getattr(logging, args.log_level.upper())
    if display is None:
        logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    if args.log_level != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    environ = dict(os.environ)
    if args.secrets_fd is not None:  # handed over by credentials.hide_and_reexec
        try:
            flag_token, moved = credentials.receive(args.secrets_fd)
        except credentials.TokenError as exc:
            raise AgentUsageError(str(exc)) from exc
        args.token = args.token or flag_token
        environ.update(moved)
    token = token_of(args, environ)
    umask = args.umask if args.umask is not None else _env_umask()
    run_umask = os.umask(umask)
    campaign_ids = None
    if args.campaign:  # resolved once: a bare NAME means its latest version at start
        with FarmhandClient(server, token) as client:
            campaign_ids = retry_unavailable(
                lambda: refs.find_campaign_ids(client, args.campaign),
                what=f"looking up --campaign at {server} (for up to {args.connect_timeout:g}s)",
                deadline=args.connect_timeout,
            )
    config = AgentConfig(
        server=server,
        token=token,
        slots=args.slots or max(1, int(resources.cores)),
        prefetch=args.prefetch,
        workdir=Path(args.workdir),
        name=args.name,
        exit_when_idle=args.exit_when_idle,
        campaign_ids=campaign_ids,
        datasets=args.dataset,
        runners=runners,
        resources=resources,
        poll_wait=args.poll,
        connect_timeout=args.connect_timeout,
        walltime=args.walltime,
        walltime_margin=args.walltime_margin,
        checkpoint_signal=args.checkpoint_signal,
        checkpoint_grace=args.checkpoint_grace,
        term_grace=args.term_grace,
        disk_limit=args.disk_limit,
        outbox=args.outbox,
        checkpoint_interval=args.checkpoint_interval,
        keep_failed_workdir=args.keep_failed_workdir,
        max_extract_bytes=args.max_extract_bytes,
        max_extract_files=args.max_extract_files,
        cache_limit=args.cache_limit,
        run_umask=run_umask,
    )
    agent = Agent(config)
    install_signal_handlers(agent)
    if display is not None:
        return display.run_with_display(agent, level)
    # What is built by now (modules, the client, pydantic's validators) lives as long as
    # the agent: out of the collector's sight, its full collections walk only what records
    # made since (they were ~3 % of the agent's CPU on short commands).
    gc.freeze()
    return agent.run()


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def _prefetch(text: str) -> int | None:
    """`auto` (None) or a whole number ≥ 0."""
    return None if text.strip().lower() == "auto" else _count(0)(text)


def _seconds(text: str) -> float:
    from farmhand.runtime.resources.walltime import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    """Bytes: a number, or one with K, M, G, T (powers of 1024; `64G`, `500MiB`)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64G, 500M, 1000000)")
    power = " KMGT".index(match[2].upper() or " ")
    value = int(float(match[1]) * 1024**power)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def _cache_limit(text: str) -> int:
    """`--cache-limit`: a size, or 0 for a cache that keeps nothing a run does not use."""
    return 0 if text.strip() == "0" else _size(text)


def _percent(text: str) -> float:
    from farmhand.runtime.resources.diskguard import parse_limit

    try:
        return parse_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _umask(text: str) -> int:
    """An octal umask: `077`, `0027`, `22`."""
    try:
        value = int(text.strip(), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal umask: {text!r} (e.g. 077)") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"a umask is 000 to 777, not {text!r}")
    return value


def _env_umask() -> int:
    """$FARMHAND_UMASK, else 077."""
    text = os.environ.get("FARMHAND_UMASK", "").strip()
    if not text:
        return DEFAULT_UMASK
    try:
        return _umask(text)
    except argparse.ArgumentTypeError as exc:
        raise AgentUsageError(f"FARMHAND_UMASK: {exc}") from None


def _signal(text: str) -> int:
    name = text.strip().upper()
    try:
        if name.isdigit():
            return int(signal.Signals(int(name)))
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"not a signal: {text!r} (e.g. TERM, USR1, INT)") from None
