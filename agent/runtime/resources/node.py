"""What a node offers an agent (cores, GPUs, memory) and what a record asks for.

The agent's totals come from its command line (`--cores`, `--gpus`, `--memory`), else from
the batch system and the OS, the first source found winning:

- cores: `SLURM_CPUS_PER_TASK`, `SLURM_CPUS_ON_NODE`, the CPU affinity mask (capped by a
  cgroup `cpu.max` quota);
- GPUs: `CUDA_VISIBLE_DEVICES` (its device ids), `SLURM_GPUS_ON_NODE` (a count),
  `/proc/driver/nvidia/gpus` (a count);
- memory: `SLURM_MEM_PER_NODE`, `SLURM_MEM_PER_CPU` times the CPUs, a cgroup memory limit,
  `/proc/meminfo`.

A record asks in its run_args: `cores` (a positive number; default: one slot's share of the
agent's cores), `gpus` (a whole number, default 0) and `memory` (MiB as a number, or a size
such as "512M", "4G", "1.5GiB"; default: not counted). Memory units are binary, like
Slurm's: 1G = 1024 MiB.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand import wire

__all__ = ["Need", "NodeResources", "detect", "parse_gpus", "parse_memory", "requested"]

_UNITS = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2, "P": 1024.0**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
#: Where Linux lists NVIDIA GPUs without running nvidia-smi (an agent must start fast).
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class NodeResources:
    """An agent's total resources and where each amount came from."""

    cores: float
    gpus: tuple[str, ...] = ()  # device ids, as CUDA_VISIBLE_DEVICES names them
    memory_mb: int | None = None  # None: unknown, never limits
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def to_wire(self) -> wire.Resources:
        """The amounts as the server sees them."""
        return wire.Resources(cores=self.cores, gpus=len(self.gpus), memory_mb=self.memory_mb)

    def describe(self) -> str:
        """`4 cores (SLURM_CPUS_PER_TASK), 2 GPUs [0,1] (…), 16384 MiB memory (…)`."""
        src = self.sources
        gpus = f"{len(self.gpus)} GPUs" + (f" [{','.join(self.gpus)}]" if self.gpus else "")
        memory = "unknown" if self.memory_mb is None else f"{self.memory_mb} MiB"
        return (
            f"{format_number(self.cores)} cores ({src.get('cores', '?')}), "
            f"{gpus} ({src.get('gpus', '?')}), {memory} memory ({src.get('memory', '?')})"
        )


@dataclass(frozen=True)
class Need:
    """What one record asks for; `cores=None` means one slot's share of the agent's cores."""

    cores: float | None = None
    gpus: int = 0
    memory_mb: int = 0


def format_number(value: float) -> str:
    """`4` for 4.0, `0.25` for 0.25: how cores are shown and put in the environment."""
    return f"{value:g}"


def parse_memory(value: object, what: str = "memory") -> int:
    """MiB from a number of MiB or a size string ("512M", "4G", "1.5GiB"); rounds up."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be MiB or a size like '4G', not {value!r}")
    if isinstance(value, (int, float)):
        amount, unit = float(value), ""
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        amount, unit = float(match.group(1)), match.group(2).upper()
    else:
        raise ValueError(f"{what} must be MiB or a size like '4G', not {value!r}")
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return math.ceil(amount * _UNITS[unit])


def parse_gpus(text: str) -> tuple[str, ...]:
    """`--gpus`: a count ("2" → devices 0 and 1) or a comma-separated list of device ids."""
    text = text.strip()
    if text.isdigit():
        return tuple(str(i) for i in range(int(text)))
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if not ids or "," not in text:
        raise ValueError(f"--gpus takes a count or a list of device ids like '0,2', not {text!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"--gpus names a device twice: {text!r}")
    return ids


def requested(run_args: Mapping[str, Any]) -> Need:
    """The resources a record's run_args ask for; ValueError names the bad key."""
    cores = run_args.get("cores")
    if cores is not None and (
        isinstance(cores, bool)
        or not isinstance(cores, (int, float))
        or not math.isfinite(cores)
        or cores <= 0
    ):
        raise ValueError(f"run_args.cores must be a positive number, not {cores!r}")
    gpus = run_args.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"run_args.gpus must be a whole number of GPUs, not {gpus!r}")
    memory = run_args.get("memory")
    memory_mb = 0 if memory is None else parse_memory(memory, "run_args.memory")
    return Need(cores=None if cores is None else float(cores), gpus=gpus, memory_mb=memory_mb)


# --- detection ---------------------------------------------------------------------------


def detect(
    environ: Mapping[str, str] | None = None,
    *,
    cores: float | None = None,
    gpus: tuple[str, ...] | None = None,
    memory_mb: int | None = None,
) -> NodeResources:
    """The agent's totals: the given amounts, else what the batch system and OS say."""
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    if cores is not None:
        if cores <= 0:
            raise ValueError(f"--cores must be positive, not {cores:g}")
        sources["cores"] = "--cores"
    else:
        cores, sources["cores"] = _detect_cores(env)
    if gpus is not None:
        sources["gpus"] = "--gpus"
    else:
        gpus, sources["gpus"] = _detect_gpus(env)
    if memory_mb is not None:
        sources["memory"] = "--memory"
    else:
        memory_mb, sources["memory"] = _detect_memory(env)
    return NodeResources(cores=cores, gpus=gpus, memory_mb=memory_mb, sources=sources)


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    # Slurm writes counts like "4" and, for some, "4(x2)" per node: the first number counts.
    match = re.match(r"\s*(\d+)", env.get(name, ""))
    value = int(match.group(1)) if match else 0
    return value if value > 0 else None


def _detect_cores(env: Mapping[str, str]) -> tuple[float, str]:
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if (count := _positive_int(env, name)) is not None:
            return float(count), name
    try:
        count, source = len(os.sched_getaffinity(0)), "CPU affinity"
    except AttributeError:  # not Linux
        count, source = os.cpu_count() or 1, "os.cpu_count()"
    quota = _cgroup_cpu_quota()
    if quota is not None and quota < count:
        return quota, "cgroup cpu.max"
    return float(count), source


def _cgroup_cpu_quota() -> float | None:
    """cgroup v2 `cpu.max` as cores ("200000 100000" → 2.0); None when unlimited or absent."""
    try:
        quota, period = (CGROUP / "cpu.max").read_text().split()[:2]
        return max(int(quota) / int(period), 0.01)
    except (OSError, ValueError, ZeroDivisionError):
        return None  # "max" (no quota), cgroup v1, or no cgroup filesystem


def _detect_gpus(env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids: list[str] = []
        for part in visible.split(","):
            part = part.strip()
            if not part or part == "-1" or part == "NoDevFiles":
                break  # CUDA stops at the first invalid entry; "-1" hides every device
            ids.append(part)
        return tuple(ids), "CUDA_VISIBLE_DEVICES"
    if (count := _positive_int(env, "SLURM_GPUS_ON_NODE")) is not None:
        return tuple(str(i) for i in range(count)), "SLURM_GPUS_ON_NODE"
    try:
        count = sum(1 for _ in NVIDIA_PROC.iterdir())
    except OSError:
        count = 0
    if count:
        return tuple(str(i) for i in range(count)), str(NVIDIA_PROC)
    return (), "none found"


def _detect_memory(env: Mapping[str, str]) -> tuple[int | None, str]:
    if (per_node := _positive_int(env, "SLURM_MEM_PER_NODE")) is not None:
        return per_node, "SLURM_MEM_PER_NODE"
    per_cpu = _positive_int(env, "SLURM_MEM_PER_CPU")
    cpus = _positive_int(env, "SLURM_CPUS_ON_NODE") or _positive_int(env, "SLURM_CPUS_PER_TASK")
    if per_cpu is not None and cpus is not None:
        return per_cpu * cpus, "SLURM_MEM_PER_CPU"
    physical = _meminfo_total_mb()
    limit = _cgroup_memory_limit_mb()
    if limit is not None and (physical is None or limit < physical):
        return limit, "cgroup memory limit"
    return physical, "/proc/meminfo" if physical is not None else "unknown"


def _cgroup_memory_limit_mb() -> int | None:
    for path in (CGROUP / "memory.max", CGROUP / "memory" / "memory.limit_in_bytes"):
        try:
            return int(path.read_text().strip()) // 2**20
        except (OSError, ValueError):
            continue  # "max" (no limit) or not this cgroup version
    return None


def _meminfo_total_mb() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
