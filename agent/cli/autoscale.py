"""`farmhand autoscale slurm|pbs`: submit batch jobs of agents while ready records wait, and
stop when they are done (the loop is `farmhand.runtime.autoscale`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from farmhand.cli.base import CliError, connect, non_negative_int, positive_int

#: The agent script each scheduler submits, relative to a farmhand checkout.
SCRIPTS = {"slurm": "deploy/slurm/farmhand-agent.sbatch", "pbs": "deploy/pbs/farmhand-agent.pbs"}
LOG_FORMAT = "%(asctime)s farmhand autoscale: %(message)s"


def default_script(scheduler: str, cwd: Path | None = None) -> Path:
    """The agent script: in the current directory's checkout, the checkout farmhand runs
    from (an editable install), or `<prefix>/share/farmhand/`; CliError naming them all."""
    relative = SCRIPTS[scheduler]
    package = Path(__file__).resolve().parents[2]  # agent/cli/autoscale.py → the checkout
    candidates = [
        (cwd or Path.cwd()) / relative,
        package / relative,
        Path(sys.prefix) / "share" / "farmhand" / Path(relative).name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise CliError(f"no agent script for {scheduler} (tried {tried}): pass --script FILE")


def cmd_autoscale(args: argparse.Namespace) -> int:
    """Run the autoscaler until stopped (or one cycle with --once)."""
    from farmhand import wire
    from farmhand.cli import refs
    from farmhand.runtime.autoscale.loop import Autoscaler, Options
    from farmhand.runtime.resources.walltime import parse_duration

    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.max_pending > args.max_jobs:
        args.max_pending = args.max_jobs
    try:
        time_limit = parse_duration(args.time_limit)
        idle = parse_duration(args.idle_timeout)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    client = connect(args)
    campaign = refs.find_campaign(client, args.campaign) if args.campaign else None
    script = Path(args.script).resolve() if args.script else default_script(args.scheduler)
    if not script.is_file():
        raise CliError(f"--script {args.script}: no such file")
    agent_args = ["--exit-when-idle", f"{idle:g}"]
    if campaign is not None:
        agent_args += ["--campaign", str(campaign.id)]
    if args.dataset:
        agent_args += ["--dataset", args.dataset]
    agent_args += args.agent_option or []
    name = args.name or _name(args.scheduler, campaign, args.dataset)
    interval = args.interval
    options = Options(
        name=name,
        time_limit=time_limit,
        max_jobs=args.max_jobs,
        max_pending=args.max_pending,
        nodes=args.nodes,
        cores=args.cpus_per_task,
        gpus=args.gpus_per_node,
        memory_mb=args.mem,
        runners=frozenset(args.runner) if args.runner else None,
        campaign_id=campaign.id if campaign else None,
        dataset=args.dataset,
        agent_args=agent_args,
        interval=interval,
        lease_ttl=min(args.lease_ttl or max(60.0, 3 * interval), wire.MAX_AUTOSCALER_TTL),
        max_backoff=max(args.max_backoff, interval),
    )
    scaler = Autoscaler(client, _scheduler(args, script, client.server), options)
    signal.signal(signal.SIGTERM, lambda *_: scaler.stop.set())
    log = logging.getLogger("farmhand.autoscale")
    log.info(
        "autoscaler %s: %s jobs of %s, at most %d (%d pending), every %gs",
        *(name, args.scheduler, script, args.max_jobs, args.max_pending, interval),
    )
    return scaler.run(once=args.once)


def _name(scheduler: str, campaign: Any, dataset: str | None) -> str:
    """The lease's name: the scheduler and the filters (the same filters, the same name)."""
    parts = [scheduler]
    if campaign is not None:
        parts.append(f"campaign={campaign.id}")
    if dataset:
        parts.append(f"dataset={dataset}")
    return ":".join(parts)


def _scheduler(args: argparse.Namespace, script: Path, server: str) -> Any:
    """The scheduler's commands, with the jobs' environment: the server, an agent token
    file (never the autoscaler's own token), and the caller's environment otherwise."""
    from farmhand.runtime.autoscale.pbs import Pbs
    from farmhand.runtime.autoscale.slurm import Slurm

    env = {
        k: v for k, v in os.environ.items() if k not in ("FARMHAND_TOKEN", "FARMHAND_ADMIN_TOKEN")
    }
    env["FARMHAND_SERVER"] = server
    default_token = (
        Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "farmhand" / "token"
    )
    env["FARMHAND_TOKEN_FILE"] = str(Path(args.agent_token_file or default_token).resolve())
    extra = list(args.scheduler_args or [])
    if args.scheduler == "pbs":
        return Pbs(script, queue=args.partition, account=args.account, extra=extra, env=env)
    return Slurm(script, partition=args.partition, account=args.account, extra=extra, env=env)


def add_parsers(
    sub: argparse._SubParsersAction,
    client_opts: argparse.ArgumentParser,
    json_opt: argparse.ArgumentParser,
) -> None:
    """Add `autoscale` to the `farmhand` parser."""
    p = sub.add_parser(
        "autoscale",
        parents=[client_opts],
        help="submit batch jobs of agents while records wait (Slurm, PBS)",
        description="Submit batch jobs of agents while ready records wait, sized to them, "
        "and stop when they are done. Arguments after `--` go to sbatch/qsub.",
    )
    p.add_argument("scheduler", choices=sorted(SCRIPTS), help="the batch system")
    p.add_argument("--max-jobs", type=positive_int, default=4, help="jobs pending + running (4)")
    p.add_argument("--max-pending", type=positive_int, default=2, help="jobs pending (2)")
    p.add_argument("--time-limit", default="1h", help="each job's walltime (default 1h)")
    p.add_argument("--nodes", type=positive_int, default=1, help="nodes per job (1)")
    p.add_argument("--partition", help="Slurm partition / PBS queue")
    p.add_argument("--account", help="the account jobs are charged to")
    p.add_argument("--cpus-per-task", type=positive_int, help="CPUs per node (default: sized)")
    p.add_argument("--gpus-per-node", type=non_negative_int, help="GPUs per node (default: sized)")
    p.add_argument("--mem", type=positive_int, metavar="MIB", help="memory per node, MiB")
    p.add_argument("--runner", action="append", help="runners the jobs' agents offer")
    p.add_argument("--campaign", help="only this campaign's records (NAME[:VERSION], id)")
    p.add_argument("--dataset", help="only this dataset's records")
    p.add_argument(
        "--idle-timeout", default="60", help="agents exit after this long idle (default 60 s)"
    )
    p.add_argument("--script", help="the agent batch script (default: deploy/<scheduler>/…)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between cycles (30)")
    p.add_argument("--lease-ttl", type=float, help="the autoscaler lease's TTL (3 x interval)")
    p.add_argument("--max-backoff", type=float, default=600.0, help="longest wait after errors")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (tests, cron)")
    p.add_argument("--name", help="the autoscaler's name (default: scheduler and filters)")
    p.add_argument("--agent-token-file", help="agent token for the jobs (~/.config/farmhand/token)")
    p.add_argument("--agent-option", action="append", help="one more option for the agents")
    p.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning"], help="log detail"
    )
    p.set_defaults(func=cmd_autoscale, scheduler_args=[])
