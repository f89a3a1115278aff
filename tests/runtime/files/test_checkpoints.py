"""Checkpoint settings and change detection, on real files (uploads: test_snapshots_loop)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farmhand.runtime.files import checkpoints, run_archive
from farmhand.runtime.files.parents import wants_unpacked


def test_the_interval_comes_from_run_args_else_the_agent() -> None:
    assert checkpoints.interval({}, 300.0) == 300.0
    assert checkpoints.interval({"checkpoint_interval": 5}, 300.0) == 5.0
    assert checkpoints.interval({"checkpoint_interval": 0}, 300.0) == 0.0
    # The forms every duration takes (walltime, timeout, --checkpoint-interval).
    assert checkpoints.interval({"checkpoint_interval": "10m"}, 300.0) == 600.0
    assert checkpoints.interval({"checkpoint_interval": "00:00:05"}, 300.0) == 5.0


@pytest.mark.parametrize("value", [-1, "soon", True, float("nan"), [5]])
def test_a_bad_interval_is_named(value: object) -> None:
    with pytest.raises(ValueError, match=r"run_args\.checkpoint_interval must be a duration"):
        checkpoints.interval({"checkpoint_interval": value}, 300.0)


def test_archive_settings_are_checked() -> None:
    assert run_archive.wanted({}) is True
    assert run_archive.wanted({"archive": False}) is False
    assert run_archive.excludes({}) == []
    assert run_archive.excludes({"archive_exclude": "*.tmp"}) == ["*.tmp"]
    assert run_archive.excludes({"archive_exclude": ["*.tmp", "scratch"]}) == ["*.tmp", "scratch"]
    with pytest.raises(ValueError, match=r"run_args\.archive must be true or false"):
        run_archive.wanted({"archive": "no"})
    with pytest.raises(ValueError, match=r"run_args\.archive_exclude must be a list of patterns"):
        run_archive.excludes({"archive_exclude": [1]})
    assert wants_unpacked({}) is False and wants_unpacked({"unpack_parents": True}) is True
    with pytest.raises(ValueError, match=r"run_args\.unpack_parents must be true or false"):
        wants_unpacked({"unpack_parents": "yes"})


def test_the_fingerprint_changes_with_names_sizes_and_mtimes(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    assert checkpoints.fingerprint(directory) is None  # nothing to save
    (directory / "state").write_text("1")
    first = checkpoints.fingerprint(directory)
    assert first is not None and checkpoints.fingerprint(directory) == first
    os.utime(directory / "state", ns=(1, 1))
    touched = checkpoints.fingerprint(directory)
    assert touched != first
    (directory / "state").write_text("12")
    assert checkpoints.fingerprint(directory) not in (first, touched)
    grown = checkpoints.fingerprint(directory)
    (directory / "sub").mkdir()
    assert checkpoints.fingerprint(directory) != grown
