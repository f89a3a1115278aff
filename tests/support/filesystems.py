"""A small real filesystem for disk-guard tests: a tmpfs mounted for one test (needs root).

Without root the tests that need it are skipped with the reason, except under CI=true,
where they fail.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class SmallFilesystem:
    """A tmpfs of a few MiB at `path`; `fill_to(percent)` and `free()` change its use."""

    def __init__(self, path: Path, size_mib: int):
        self.path = path
        self.size_mib = size_mib
        self.ballast = path / "ballast"

    def used_percent(self) -> float:
        """As the agent measures it (df's formula)."""
        info = os.statvfs(self.path)
        used = info.f_blocks - info.f_bfree
        return 100.0 * used / (used + info.f_bavail)

    def fill_to(self, percent: float) -> None:
        """Grow the ballast file until the filesystem is at least `percent` full."""
        with self.ballast.open("ab") as handle:
            while self.used_percent() < percent:
                handle.write(b"\0" * 65536)
                handle.flush()
                os.fsync(handle.fileno())

    def fill(self) -> None:
        """Fill it up completely: the next write gets ENOSPC."""
        with contextlib.suppress(OSError):  # ENOSPC: full
            self.fill_to(101.0)

    def free(self) -> None:
        """Remove the ballast."""
        self.ballast.unlink(missing_ok=True)


def mount_problem() -> str | None:
    """Why a tmpfs cannot be mounted here (None when it can)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    return None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFilesystem]:
    """A 4 MiB tmpfs, unmounted after the test."""
    problem = mount_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs the disk-guard tests: {problem}", pytrace=False)
        pytest.skip(f"disk-guard test skipped: {problem}")
    path = tmp_path / "small-fs"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], check=True)
    try:
        yield SmallFilesystem(path, 4)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
