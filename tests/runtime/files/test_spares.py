"""Spare run directories (`files/spares.py`): a finished run's empty directories and output
files are renamed into a pool and back into place for the next run; nothing of the earlier
run reaches the next, and what is not just like a new one is deleted as before."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.runtime.files.rundirs import make_run_dir, remove_run_dir
from farmhand.runtime.files.spares import Spares, current_umask, filesystem_type
from tests.runtime.test_agent import by_key, make_agent, submit

if TYPE_CHECKING:
    from tests.conftest import LiveServer

UMASK = current_umask()


@pytest.fixture
def spares(tmp_path: Path) -> Spares:
    assert UMASK is not None, "/proc/self/status gives no umask here"
    return Spares(tmp_path / "runs", umask=UMASK)


def finished_run(workdir: Path, spares: Spares, run_id: int, key: str = "k") -> Path:
    """A run directory as a command leaves it: output in both files, `checkpoint/`."""
    run_dir = make_run_dir(workdir, 1, key, run_id, spares)
    if not spares.place_dir(run_dir / "checkpoint"):
        (run_dir / "checkpoint").mkdir()
    for name in ("stdout.txt", "stderr.txt"):
        if not spares.place_file(run_dir / name):
            (run_dir / name).touch()
        with open(run_dir / name, "a") as out:
            out.write(f"{name} of run {run_id}\n")
    return run_dir


def test_the_next_run_gets_the_last_ones_inodes_empty(tmp_path: Path, spares: Spares) -> None:
    first = finished_run(tmp_path, spares, 10)
    inodes = {p.name: p.stat().st_ino for p in [first, first.parent, *first.iterdir()]}
    remove_run_dir(first, spares)
    assert not first.parent.exists()  # the key directory went too
    second = finished_run(tmp_path, spares, 11, key="other")
    assert second.stat().st_ino in inodes.values()
    assert second.parent.stat().st_ino in inodes.values()
    assert (second / "checkpoint").stat().st_ino == inodes["checkpoint"]
    assert sorted(p.name for p in second.iterdir()) == ["checkpoint", "stderr.txt", "stdout.txt"]
    assert list((second / "checkpoint").iterdir()) == []
    # Only what run 11 wrote: run 10's output was cut off before its files were kept.
    assert (second / "stdout.txt").read_text() == "stdout.txt of run 11\n"
    assert (second / "stderr.txt").read_text() == "stderr.txt of run 11\n"
    assert {(second / n).stat().st_ino for n in ("stdout.txt", "stderr.txt")} == {
        inodes["stdout.txt"],
        inodes["stderr.txt"],
    }


def test_what_is_not_like_a_new_one_is_deleted_not_kept(tmp_path: Path, spares: Spares) -> None:
    run_dir = finished_run(tmp_path, spares, 20)
    elsewhere = tmp_path / "kept-by-the-command.txt"
    os.link(run_dir / "stdout.txt", elsewhere)  # truncating it would empty this too
    (run_dir / "stderr.txt").chmod(0o400)  # a new one would not be read-only
    target = tmp_path / "target"
    target.write_text("not followed\n")
    (run_dir / "link").symlink_to(target)
    (run_dir / "results.json").write_text("{}")
    remove_run_dir(run_dir, spares)
    assert not run_dir.exists()
    assert elsewhere.read_text() == "stdout.txt of run 20\n"
    assert target.read_text() == "not followed\n"
    # results.json is an empty file now, and the only file the pool kept.
    assert len(spares._files) == 1 and len(spares._dirs) == 3  # run, key and checkpoint
    for name in spares._files:
        assert (spares.directory / name).stat().st_size == 0


def test_a_directory_that_is_not_empty_is_removed_as_before(tmp_path: Path, spares: Spares) -> None:
    run_dir = finished_run(tmp_path, spares, 30)
    (run_dir / "checkpoint" / "state.bin").write_bytes(b"x")
    (run_dir / "out" / "deep").mkdir(parents=True)
    remove_run_dir(run_dir, spares)
    assert not run_dir.exists() and not run_dir.parent.exists()
    assert spares._dirs == [] and spares._files == []  # nothing moved: removed whole


def test_an_existing_file_is_never_replaced_by_a_spare(tmp_path: Path, spares: Spares) -> None:
    remove_run_dir(finished_run(tmp_path, spares, 40), spares)
    run_dir = make_run_dir(tmp_path, 1, "k", 41, spares)
    (run_dir / "stdout.txt").write_text("an input of that name\n")
    assert not spares.place_file(run_dir / "stdout.txt")
    assert (run_dir / "stdout.txt").read_text() == "an input of that name\n"
    assert spares.place_file(run_dir / "stderr.txt")


def test_a_key_directory_holding_another_run_stays(tmp_path: Path, spares: Spares) -> None:
    first = finished_run(tmp_path, spares, 50)
    retry = finished_run(tmp_path, spares, 51)  # the same record's next attempt
    remove_run_dir(first, spares)
    assert retry.exists() and (retry / "stdout.txt").read_text() == "stdout.txt of run 51\n"
    remove_run_dir(retry, spares)
    assert not retry.parent.exists()


def test_an_existing_run_directory_is_still_refused(tmp_path: Path, spares: Spares) -> None:
    run_dir = finished_run(tmp_path, spares, 60)
    remove_run_dir(finished_run(tmp_path, spares, 61, key="other"), spares)
    with pytest.raises(FileExistsError):
        make_run_dir(tmp_path, 1, "k", 60, spares)  # leftovers are never mixed into a run
    assert (run_dir / "stdout.txt").read_text() == "stdout.txt of run 60\n"


def test_the_pool_is_bounded_and_cleared(tmp_path: Path) -> None:
    assert UMASK is not None
    spares = Spares(tmp_path / "runs", umask=UMASK, limit=2)
    for run_id in range(3):
        remove_run_dir(finished_run(tmp_path, spares, 70 + run_id, key=f"k{run_id}"), spares)
    assert len(spares._dirs) == 2 and len(spares._files) == 2
    assert len(list(spares.directory.iterdir())) == 4
    spares.clear()
    assert not spares.directory.exists()
    assert list((tmp_path / "runs" / "1").iterdir()) == []


def test_the_pools_of_agents_gone_are_swept(tmp_path: Path, spares: Spares) -> None:
    runs = tmp_path / "runs"
    dead = runs / ".spare-999999999"  # above any pid_max
    (dead / "3").mkdir(parents=True)
    remove_run_dir(finished_run(tmp_path, spares, 80), spares)
    Spares.sweep(runs)
    assert not dead.exists()
    assert spares.directory.exists()  # this process is alive
    assert (runs / "1").exists()


def test_the_pool_is_for_disks_not_ram_disks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = filesystem_type(tmp_path)
    assert kind is not None
    monkeypatch.setenv("FARMHAND_SPARES", "off")
    assert Spares.for_agent(tmp_path) is None
    monkeypatch.setenv("FARMHAND_SPARES", "on")
    assert Spares.for_agent(tmp_path) is not None
    monkeypatch.delenv("FARMHAND_SPARES")
    assert (Spares.for_agent(tmp_path) is None) == (kind in ("tmpfs", "ramfs"))
    if Path("/dev/shm").is_dir():
        assert filesystem_type(Path("/dev/shm")) == "tmpfs"
        assert Spares.for_agent(Path("/dev/shm") / "not-made-yet") is None


def test_an_agent_recycles_without_mixing_runs(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records one after another on one slot, archived or not: each run's output is its
    own, a run directory kept on the node stays whole, and the pool is gone once the
    agent stops."""
    monkeypatch.setenv("FARMHAND_SPARES", "on")
    client = live_server.client()
    specs = [
        wire.RecordSpec(
            key=f"r{i}",
            command=f"ls -A; ls -A checkpoint; echo out-{i}; echo err-{i} >&2",
            run_args={"archive": i % 2 == 0},
        )
        for i in range(6)
    ]
    campaign_id = submit(client, *specs)
    agent = make_agent(live_server, tmp_path / "work", slots=1)
    assert agent.spares is not None
    assert agent.run() == 0
    records = by_key(client, campaign_id)
    for i in range(6):
        (run,) = records[f"r{i}"].runs or []
        # What a new run directory holds when the command starts, and an empty checkpoint/.
        assert run.stdout_tail == f"checkpoint\nstderr.txt\nstdout.txt\nout-{i}\n"
        assert run.stderr_tail == f"err-{i}\n"
    runs = tmp_path / "work" / "runs"
    assert [p.name for p in runs.iterdir()] == [str(campaign_id)]  # the pool is gone
    # Archived runs' directories went back to the pool; the others stay on the node.
    kept = {p.name: p for p in (runs / str(campaign_id)).iterdir()}
    assert sorted(kept) == ["r1", "r3", "r5"]
    for key, key_dir in kept.items():
        (run_dir,) = key_dir.iterdir()
        assert (run_dir / "stderr.txt").read_text() == f"err-{key[1:]}\n"
