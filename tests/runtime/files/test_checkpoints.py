"""Checkpoint settings and change detection, on real files (uploads: test_snapshots_loop)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from farmhand import wire
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


class _NoUploads:
    """A client that must never be asked: the checkpoint directory stays empty."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the client was asked for {name}")


def _checkpointer(tmp_path: Path, every: float) -> checkpoints.Checkpointer:
    lease = wire.Lease.model_validate(
        {
            "run_id": 7,
            "record_id": 3,
            "campaign_id": 1,
            "key": "k",
            "command": "true",
            "token": "t" * 32,
            "expires_at": "2026-12-06T00:00:00Z",
            "attempt": 1,
        }
    )
    (tmp_path / "checkpoint").mkdir()
    return checkpoints.Checkpointer(
        _NoUploads(),  # type: ignore[arg-type]
        lease,
        tmp_path / "checkpoint",
        tmp_path / "scratch",
        every,
    )


def _checkpoint_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("farmhand-checkpoint-")}


def test_a_command_shorter_than_the_interval_costs_no_thread(tmp_path: Path) -> None:
    before = _checkpoint_threads()
    saver = _checkpointer(tmp_path, every=3600)
    saver.start()
    for _ in range(5):
        saver.tick()  # what the attempt's wait loop does while the command runs
    assert _checkpoint_threads() == before
    saver.stop()


def test_the_periodic_thread_starts_once_the_first_upload_is_due(tmp_path: Path) -> None:
    saver = _checkpointer(tmp_path, every=0.05)
    saver.start()
    began = time.monotonic()
    while "farmhand-checkpoint-7" not in _checkpoint_threads():
        saver.tick()
        assert time.monotonic() - began < 30, "the periodic thread never started"
        time.sleep(0.01)
    assert time.monotonic() - began >= 0.05  # not before its interval
    saver.tick()  # a second tick starts no second thread
    assert len(_checkpoint_threads() & {"farmhand-checkpoint-7"}) == 1
    saver.stop()  # joins it; an empty directory was never uploaded (the client would fail)
    assert "farmhand-checkpoint-7" not in _checkpoint_threads()
