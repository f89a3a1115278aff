"""Walltime: durations, Slurm's time left (through real squeue/scontrol executables), and the
arithmetic of the drain."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.runtime.resources.walltime import (
    Walltime,
    parse_duration,
    parse_slurm_time_left,
    run_walltime,
    slurm_time_left,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("1.5", 1.5),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1:30", 90),
        ("01:00:00", 3600),
        ("2-03", 2 * 86400 + 3 * 3600),
        ("1-02:03", 86400 + 2 * 3600 + 3 * 60),
        ("1-02:03:04", 86400 + 2 * 3600 + 3 * 60 + 4),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5", "nan", "inf", "1:2:3:4", "5-", "1h30"])
def test_bad_durations_name_the_forms_that_work(text: str) -> None:
    with pytest.raises(
        ValueError,
        match=r"not a duration: .* \(use seconds, 30m, 2h, 1d, MM:SS, HH:MM:SS or D-HH:MM:SS\)",
    ):
        parse_duration(text)


def test_slurm_time_left_forms() -> None:
    assert parse_slurm_time_left("0:59") == 59
    assert parse_slurm_time_left("1-00:00:00") == 86400
    assert parse_slurm_time_left("UNLIMITED") is None
    assert parse_slurm_time_left("NOT_SET") is None
    with pytest.raises(ValueError, match="no time left"):
        parse_slurm_time_left("INVALID")


def fake_command(bin_dir: Path, name: str, script: str) -> None:
    """An executable `name` on PATH that runs `script` (sh)."""
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on PATH, for stand-in squeue/scontrol executables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_time_left_asks_squeue_for_this_job(fake_bin: Path, tmp_path: Path) -> None:
    fake_command(fake_bin, "squeue", f'echo "$@" > {tmp_path}/argv; echo 1:02:03')
    assert slurm_time_left("4711") == 3723
    assert (tmp_path / "argv").read_text().split() == ["-h", "-j", "4711", "-o", "%L"]


def test_time_left_falls_back_to_scontrol_end_time(fake_bin: Path) -> None:
    fake_command(fake_bin, "squeue", "echo 'slurm_load_jobs error: timeout' >&2; exit 1")
    end = (datetime.now() + timedelta(minutes=10)).replace(microsecond=0)
    fake_command(
        fake_bin, "scontrol", f"echo 'JobId=7 JobState=RUNNING EndTime={end:%Y-%m-%dT%H:%M:%S}'"
    )
    left = slurm_time_left("7")
    assert left is not None and 590 <= left <= 600


def test_time_left_names_both_failures(fake_bin: Path) -> None:
    fake_command(fake_bin, "squeue", "echo 'no such job' >&2; exit 1")
    fake_command(fake_bin, "scontrol", "echo 'Invalid job id specified' >&2; exit 1")
    with pytest.raises(
        RuntimeError, match=r"cannot learn the end of Slurm job 9: squeue: .*no such"
    ):
        slurm_time_left("9")


def test_discover_takes_the_earlier_end_and_survives_a_silent_slurm(fake_bin: Path) -> None:
    fake_command(fake_bin, "squeue", "echo 10:00")
    under_slurm = {"SLURM_JOB_ID": "5"}
    assert Walltime.discover(walltime=None, margin=60, environ=under_slurm).source == "Slurm job 5"
    tighter = Walltime.discover(walltime=120, margin=60, environ=under_slurm)
    assert tighter.source == "--walltime 120s" and 119 <= (tighter.left() or 0) <= 120
    fake_command(fake_bin, "squeue", "exit 1")
    fake_command(fake_bin, "scontrol", "exit 1")
    unknown = Walltime.discover(walltime=None, margin=60, environ=under_slurm)
    assert unknown.left() is None and not unknown.drain_due()  # runs on, with a warning
    assert Walltime.discover(walltime=None, margin=60, environ={}).usable() is None


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_usable_time_fits_and_drain() -> None:
    clock = Clock()
    walltime = Walltime(clock.now + 600, margin=120, source="test", clock=clock)
    assert walltime.left() == 600 and walltime.usable() == 480
    assert walltime.fits(480) and not walltime.fits(481)
    assert not walltime.drain_due()
    clock.now += 480
    assert walltime.drain_due() and walltime.usable() == 0
    unlimited = Walltime(None, margin=120, clock=clock)
    assert unlimited.fits(10**9) and unlimited.usable() is None and not unlimited.drain_due()


def lease(**run_args: object) -> wire.Lease:
    return wire.Lease(
        run_id=1,
        token="t",
        expires_at=datetime.now(),
        record_id=1,
        campaign_id=1,
        key="k",
        command="true",
        attempt=1,
        run_args=run_args,
    )


def test_a_lease_is_refused_only_when_its_estimate_is_longer_than_the_time_usable() -> None:
    clock = Clock()
    walltime = Walltime(clock.now + 600, margin=100, clock=clock)
    assert walltime.refuses(lease()) is None
    assert walltime.refuses(lease(walltime=500)) is None
    assert walltime.refuses(lease(walltime="8m")) is None
    why = walltime.refuses(lease(walltime="1h"))
    assert why == "needs walltime 1h 00m; this agent has 8m 20s before its drain"
    assert walltime.refuses(lease(walltime="whenever")) is None  # logged, then run


def test_run_walltime_reads_numbers_and_durations() -> None:
    assert run_walltime({}) is None
    assert run_walltime({"walltime": 90}) == 90.0
    assert run_walltime({"walltime": "01:30:00"}) == 5400
    refusals = {
        True: "run_args.walltime must be a duration (seconds, 30m, 2h, 1d, MM:SS, HH:MM:SS or "
        "D-HH:MM:SS), got True",
        -1: "run_args.walltime must be a duration (seconds, 30m, 2h, 1d, MM:SS, HH:MM:SS or "
        "D-HH:MM:SS), got -1",
        "later": "run_args.walltime must be a duration (seconds, 30m, 2h, 1d, MM:SS, HH:MM:SS or "
        "D-HH:MM:SS), got 'later'",
    }
    for bad, why in refusals.items():
        with pytest.raises(ValueError, match=re.escape(why)):
            run_walltime({"walltime": bad})
