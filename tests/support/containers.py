"""Real containers for tests: podman and the busybox image `.ci/run` builds offline.

When podman or the image is missing the container tests are skipped with the reason, except
under CI=true, where that fails them (the same rule as PostgreSQL in tests/support/databases.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

IMAGE = "farmhand-busybox"
#: On this host podman needs runc (crun is absent) and limits it may set without
#: CAP_SYS_RESOURCE; a runners.d definition carries them in `options`.
PODMAN_OPTIONS = [
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
]


@cache
def podman_problem() -> str | None:
    """Why podman cannot run the test image here (None when it can)."""
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs it)"
    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:
        return f"podman has no image {IMAGE!r} (.ci/run builds it)"
    smoke = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", *PODMAN_OPTIONS, IMAGE, "true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if smoke.returncode != 0:
        return f"podman cannot run {IMAGE!r}: {smoke.stderr.strip()[:300]}"
    return None


def require_podman() -> None:
    """Skip (or, under CI=true, fail) when podman cannot run the test image."""
    problem = podman_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs podman: {problem}", pytrace=False)
    pytest.skip(f"container tests skipped: {problem}")


def containers(name_prefix: str) -> list[str]:
    """Names of every container (running or not) whose name starts with `name_prefix`."""
    out = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^{name_prefix}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [n for n in out.stdout.split() if n.startswith(name_prefix)]


def run_containers() -> list[str]:
    """Containers named like an agent's runs (`farmhand-<run id>-<8 hex>`), so containers of
    other tests running at the same time (`farmhand-test-…`) do not count."""
    return [n for n in containers("farmhand-") if re.fullmatch(r"farmhand-\d+-[0-9a-f]{8}", n)]


def write_definitions(
    directory: Path, name: str = "busybox", image: str = IMAGE, **extra: str
) -> Path:
    """A runners.d directory holding one podman runner for the test image (or `image`)."""
    directory.mkdir(parents=True, exist_ok=True)
    options = ", ".join(f'"{o}"' for o in [*PODMAN_OPTIONS, "--pull", "never"])
    lines = [
        f"[runners.{name}]",
        'kind = "container"',
        'engine = "podman"',
        f'image = "{image}"',
        'network = "none"',
        f"options = [{options}]",
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return directory
