"""The disk guard measures a real filesystem and pauses above its limit."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from farmhand.agent.diskguard import DiskGuard, parse_limit, used_percent
from tests.filesystems import SmallFilesystem


def test_limits() -> None:
    assert parse_limit("90%") == 90.0
    assert parse_limit(" 75.5 ") == 75.5
    assert parse_limit("100%") == 100.0
    for bad in ("0%", "101", "-5%", "ninety", "nan", ""):
        with pytest.raises(ValueError, match="give a percentage such as 90%"):
            parse_limit(bad)


def test_used_percent_agrees_with_df(tmp_path: Path) -> None:
    out = subprocess.run(
        ["df", "--output=pcent", str(tmp_path)], capture_output=True, text=True, check=True
    )
    df = float(out.stdout.splitlines()[1].strip().rstrip("%"))
    # df rounds up to a whole percent; the filesystem may change a little between the two.
    assert df - 2 <= used_percent(tmp_path) <= df + 1


def test_pauses_above_the_limit_and_resumes_when_space_frees(
    small_fs: SmallFilesystem, caplog: pytest.LogCaptureFixture
) -> None:
    guard = DiskGuard(small_fs.path, 50.0)
    caplog.set_level(logging.INFO, logger="farmhand.agent")
    assert guard.check() is None and guard.used is not None and guard.used < 50
    small_fs.fill_to(60)
    reason = guard.check()
    assert reason is not None and reason.startswith("disk 6") and "limit 50%" in reason
    assert guard.paused == reason
    guard.check()  # still full: said once, not at every check
    warnings = [r for r in caplog.records if "claiming nothing until space frees" in r.message]
    assert len(warnings) == 1
    small_fs.free()
    assert guard.check() is None and guard.paused is None
    assert any("under the 50% limit again: claiming again" in r.message for r in caplog.records)


def test_without_a_limit_it_only_measures(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path, None)
    assert guard.check() is None and guard.used is not None


def test_a_missing_directory_pauses_a_guarded_agent(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path / "gone", 90.0)
    reason = guard.check()
    assert reason is not None and reason.startswith("cannot measure the disk of")
    assert DiskGuard(tmp_path / "gone", None).check() is None
