"""Checkpoint settings and change detection, on real files (uploads: test_snapshots_loop)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.runtime.files import checkpoints, run_archive
from farmhand.runtime.files.archives import pack_dir
from farmhand.runtime.files.cache import SnapshotCache
from farmhand.runtime.files.parents import wants_unpacked
from farmhand.runtime.files.stage_in import Prepared, SnapshotSettings, stage_snapshots


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


def _lease(**fields: object) -> wire.Lease:
    return wire.Lease.model_validate(
        {
            "run_id": 7,
            "record_id": 3,
            "campaign_id": 1,
            "key": "k",
            "command": "true",
            "token": "t" * 32,
            "expires_at": "2026-12-06T00:00:00Z",
            "attempt": 1,
            **fields,
        }
    )


def _checkpointer(
    tmp_path: Path, every: float, files: dict[str, str] | None = None, *, empty: bool = False
) -> checkpoints.Checkpointer:
    (tmp_path / "checkpoint").mkdir()
    for name, text in (files or {}).items():
        (tmp_path / "checkpoint" / name).write_text(text)
    return checkpoints.Checkpointer(
        _NoUploads(),  # type: ignore[arg-type]
        _lease(),
        tmp_path / "checkpoint",
        tmp_path / "scratch",
        every,
        empty=empty,
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


def test_a_restored_checkpoint_is_not_sent_back_unchanged(tmp_path: Path) -> None:
    saver = _checkpointer(tmp_path, every=0, files={"state.json": "{}"})
    assert saver.save("final") is False  # the client would have been asked otherwise


class _Restores:
    """A client that serves one checkpoint, packed from `source`."""

    def __init__(self, source: Path, tmp_path: Path):
        self.tarball = tmp_path / "served.tar.gz"
        self.sha256 = pack_dir(source, self.tarball)

    def download_snapshot(self, sha256: str, dest: Path) -> None:
        assert sha256 == self.sha256
        shutil.copyfile(self.tarball, dest)


def _stage(tmp_path: Path, run_dir: Path, client: object, **lease: object) -> Prepared:
    settings = SnapshotSettings(
        cache=SnapshotCache(tmp_path / "cache", client, 10**9),  # type: ignore[arg-type]
        scratch=tmp_path / "scratch",
        max_extract_bytes=10**6,
        max_extract_files=100,
        checkpoint_interval=0,
    )
    return stage_snapshots(
        client,  # type: ignore[arg-type]
        _lease(**lease),
        run_dir,
        settings,
        lambda call, what: call(),
    )


def test_staging_says_when_the_checkpoint_directory_is_known_empty(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert _stage(tmp_path, fresh, _NoUploads()).checkpoint_empty
    # Something put there before (an input named checkpoint/…): it must be looked at.
    placed = tmp_path / "placed"
    (placed / "checkpoint").mkdir(parents=True)
    assert not _stage(tmp_path, placed, _NoUploads()).checkpoint_empty
    # A restored checkpoint is not empty, nor new: not sent back unless it changes.
    source = tmp_path / "saved"
    source.mkdir()
    (source / "state.json").write_text("{}")
    client = _Restores(source, tmp_path)
    restored = tmp_path / "restored"
    restored.mkdir()
    prepared = _stage(tmp_path, restored, client, checkpoint=client.sha256)
    assert prepared.restored and not prepared.checkpoint_empty
    assert (restored / "checkpoint" / "state.json").read_text() == "{}"
