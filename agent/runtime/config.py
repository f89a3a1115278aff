"""What `farmhand agent` is told: `AgentConfig`, checked before an agent starts."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from farmhand.runtime.files.extract import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES
from farmhand.runtime.resources.node import NodeResources
from farmhand.runtime.runners import definitions

__all__ = ["AgentConfig"]


@dataclass
class AgentConfig:
    """An agent's settings; `check()` raises ValueError naming the first bad one."""

    server: str
    token: str | None = None
    slots: int = 1
    workdir: Path = Path("farmhand-work")
    name: str | None = None  # default f"{hostname}-{pid}"
    exit_when_idle: float | None = None  # seconds with nothing running and nothing to claim
    campaign_id: int | None = None
    campaign_ids: list[int] | None = None  # claim only from these campaigns
    datasets: list[str] | None = None  # claim only records of these datasets
    poll_wait: float = 30.0  # longest long poll and idle interval (--poll; ≤ wire.MAX_WAIT)
    term_grace: float = 5.0  # SIGTERM→SIGKILL grace when terminating a run
    report_deadline: float = 600.0  # how long a stopping agent waits for its outbox
    connect_timeout: float = 300.0  # how long registration retries an unreachable server
    prefetch: int | None = None  # leases staged beyond the slots (None: auto, see Prefetch)
    walltime: float | None = None  # seconds from start (a Slurm job's end is found anyway)
    walltime_margin: float = 120.0  # the walltime drain begins this long before the end
    checkpoint_signal: int = signal.SIGTERM  # sent to running commands by the drain
    checkpoint_grace: float = 60.0  # how long the drain waits for them to checkpoint
    disk_limit: float | None = None  # percent of the workdir's filesystem; above: no claims
    outbox: Path | None = None  # default <workdir>/outbox
    runners: definitions.Runners | None = None  # default: only the built-in subprocess
    resources: NodeResources | None = None  # default: detected from the batch system and OS
    checkpoint_interval: float = 300.0  # seconds between checkpoint uploads (0: at the end)
    keep_failed_workdir: bool = False  # keep a failed run's directory after its report
    max_extract_bytes: int = DEFAULT_MAX_BYTES  # caps on unpacking an archive or checkpoint
    max_extract_files: int = DEFAULT_MAX_FILES
    cache_limit: int | None = None  # bytes the snapshot cache alone may hold (None: no limit)
    run_umask: int | None = None  # the commands' umask (None: the agent's own)

    def check(self) -> None:
        """Raise ValueError for settings no agent can work with."""
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, not {self.slots}")
        for name in (
            "poll_wait",
            "term_grace",
            "walltime_margin",
            "checkpoint_grace",
            "checkpoint_interval",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)}")
        for name in ("exit_when_idle", "walltime", "prefetch"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, not {value}")
        for name in ("max_extract_bytes", "max_extract_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.cache_limit is not None and self.cache_limit < 0:
            raise ValueError(f"cache_limit must not be negative, not {self.cache_limit}")
        if self.disk_limit is not None and not 0 < self.disk_limit <= 100:
            raise ValueError(f"disk_limit must be a percentage in (0, 100], not {self.disk_limit}")
        try:
            signal.Signals(self.checkpoint_signal)
        except ValueError:
            raise ValueError(f"checkpoint_signal {self.checkpoint_signal} is no signal") from None

    @property
    def outbox_dir(self) -> Path:
        """Where final reports wait for the server."""
        return self.outbox if self.outbox is not None else Path(self.workdir) / "outbox"
