"""Inputs, output archives, checkpoints and parents' archives through an in-process agent
against a real server process."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tarfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.files.cache import InputError, SnapshotCache
from farmhand.runtime.files.rundirs import safe_name
from tests.runtime.test_agent import Running, by_key, make_agent, submit

if TYPE_CHECKING:
    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe

spec = wire.RecordSpec


def upload(client: FarmhandClient, tmp_path: Path, name: str, data: bytes) -> str:
    """Upload `data` as a snapshot (through a file named `name`); its sha256."""
    path = tmp_path / "uploads" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return client.upload_snapshot(path)


def read_archive(client: FarmhandClient, sha256: str | None, dest: Path) -> dict[str, bytes]:
    """The regular files of a run's archive by name (directories as b"<dir>")."""
    assert sha256 is not None, "the run has no archive"
    client.download_snapshot(sha256, dest)
    members: dict[str, bytes] = {}
    with tarfile.open(dest) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            members[member.name] = handle.read() if handle else b"<" + member.type + b">"
    return members


def run_path(work: Path, campaign_id: int, key: str, run_id: int) -> Path:
    return work / "runs" / str(campaign_id) / safe_name(key) / str(run_id)


def test_shared_inputs_are_fetched_once_and_placed_in_every_run(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    shared = upload(client, tmp_path, "pot.eam", b"shared potential\n")
    own = [upload(client, tmp_path, f"in{i}", f"input {i}\n".encode()) for i in range(3)]
    command = (
        "cat pot/Al.eam own.txt > out.txt; "
        """printf '{"mode": "%s"}' "$(stat -c %a pot/Al.eam)" > results.json"""
    )
    campaign_id = submit(
        client,
        *(
            spec(key=f"r{i}", command=command, inputs={"pot/Al.eam": shared, "own.txt": own[i]})
            for i in range(3)
        ),
    )
    work = tmp_path / "work"
    agent = make_agent(live_server, work, slots=2, prefetch=1)
    assert agent.run() == 0
    records = by_key(client, campaign_id)
    assert {k: (r.state, r.result) for k, r in records.items()} == {
        f"r{i}": ("done", {"mode": "444"}) for i in range(3)
    }
    cache = agent._context.snapshots.cache
    assert cache.downloads == 4  # the shared one once, each record's own once
    assert sorted(p.name for p in (work / "cache").iterdir()) == sorted([shared, *own])
    for i, record in enumerate(records.values()):
        assert record.runs
        run = record.runs[-1]
        files = read_archive(client, run.archive, tmp_path / f"r{i}.tar.gz")
        assert files["out.txt"] == b"shared potential\n" + f"input {i}\n".encode()
        assert {"results.json", "stdout.txt", "stderr.txt"} <= set(files)
        assert "checkpoint" not in files  # empty: left out
        assert "own.txt" not in files and "pot/Al.eam" not in files  # the server has them
        assert not run_path(work, campaign_id, record.key, run.id).exists()  # delivered: gone


def test_an_input_the_server_does_not_have_is_refused_by_the_cache(
    live_server: LiveServer, tmp_path: Path
) -> None:
    cache = SnapshotCache(tmp_path / "cache", live_server.client())
    with pytest.raises(InputError, match="is not on the server"):
        cache.fetch("0" * 64)
    assert cache.downloads == 0 and not (tmp_path / "cache" / ("0" * 64)).exists()


def test_archive_settings_and_what_stays_on_the_node(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    writes = "mkdir -p big sub; echo keep > keep.dat; echo x > scratch.tmp; echo y > sub/s.tmp; "
    writes += "echo z > big/z"
    campaign_id = submit(
        client,
        spec(key="ok", command=writes, run_args={"archive_exclude": ["*.tmp", "big"]}),
        spec(key="broken", command="echo partial > part.dat; exit 3", run_args={"max_attempts": 1}),
        spec(key="unarchived", command="echo mine > only-here.dat", run_args={"archive": False}),
    )
    # A typo never reaches the node: `archive = "no"` is refused where it is submitted.
    with pytest.raises(ValueError, match=r"run_args\.archive must be true or false, got 'no'"):
        spec(key="typo", command="true", run_args={"archive": "no"})
    work = tmp_path / "work"
    assert make_agent(live_server, work, slots=2, keep_failed_workdir=True).run() == 0
    records = by_key(client, campaign_id)
    states = {k: r.state for k, r in records.items()}
    assert states == {"ok": "done", "broken": "failed", "unarchived": "done"}

    ok = records["ok"].runs[-1]  # type: ignore[index]
    files = read_archive(client, ok.archive, tmp_path / "ok.tar.gz")
    assert files["keep.dat"] == b"keep\n"
    assert not {"scratch.tmp", "sub/s.tmp", "big", "big/z"} & set(files)
    assert "sub" in files
    assert not run_path(work, campaign_id, "ok", ok.id).exists()

    broken = records["broken"].runs[-1]  # type: ignore[index]
    files = read_archive(client, broken.archive, tmp_path / "broken.tar.gz")
    assert files["part.dat"] == b"partial\n"
    kept = run_path(work, campaign_id, "broken", broken.id)  # --keep-failed-workdir
    assert (kept / "part.dat").read_text() == "partial\n"

    unarchived = records["unarchived"].runs[-1]  # type: ignore[index]
    assert unarchived.archive is None
    here = run_path(work, campaign_id, "unarchived", unarchived.id)
    assert (here / "only-here.dat").read_text() == "mine\n"  # the only copy stays


COUNTER = r"""
import json, os, pathlib, sys, time
box = pathlib.Path(os.environ["FARMHAND_CHECKPOINT_DIR"])
state = box / "state.json"
restored = os.environ.get("FARMHAND_RESTORED") == "1"
count = json.loads(state.read_text())["count"] if restored else 0
tmp = box / "state.tmp"
for _ in range(3):
    count += 1
    tmp.write_text(json.dumps({"count": count}))
    tmp.rename(state)
pathlib.Path("results.json").write_text(json.dumps({"count": count, "restored": restored}))
if MODE == "fail" and not restored:
    sys.exit(7)
if MODE == "wait" and not restored:
    pathlib.Path(sys.argv[1]).touch()
    time.sleep(600)
"""


def counter_command(tmp_path: Path, mode: str) -> str:
    script = tmp_path / f"counter-{mode}.py"
    script.write_text(f"MODE = {mode!r}\n" + COUNTER)
    return f"{sys.executable} {script} {tmp_path / 'waiting'}"


def test_a_failed_attempt_saves_its_checkpoint_and_the_retry_resumes_from_it(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign_id = submit(
        client,
        spec(
            key="resume",
            command=counter_command(tmp_path, "fail"),
            # Only the final save; the retry at once (the agent exits when idle for 1 s).
            run_args={"max_attempts": 2, "checkpoint_interval": 0, "retry_delay": 0},
        ),
    )
    assert make_agent(live_server, tmp_path / "work", slots=1).run() == 0
    record = by_key(client, campaign_id)["resume"]
    assert record.state == "done", record.error
    assert record.result == {"count": 6, "restored": True}
    assert record.runs is not None
    first, second = record.runs
    assert (first.state, first.exit_code) == ("failed", 7)
    assert first.checkpoint is not None and second.checkpoint is None
    saved = read_archive(client, first.checkpoint, tmp_path / "ckpt.tar.gz")
    assert json.loads(saved["state.json"]) == {"count": 3}


def test_among_many_records_each_retry_resumes_from_its_own_checkpoint(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Issue 13: on SQLite the claim looked checkpoints up by the checkpoint's own id, so a
    retry resumed only when that id happened to equal its record's."""
    client = live_server.client()
    resumed = {"k2", "k4"}
    commands = {mode: counter_command(tmp_path, mode) for mode in ("fail", "ok")}
    run_args = {"max_attempts": 2, "checkpoint_interval": 0, "retry_delay": 0}
    specs = [
        spec(key=k, command=commands["fail" if k in resumed else "ok"], run_args=run_args)
        for k in (f"k{i}" for i in range(6))
    ]
    campaign_id = submit(client, *specs)
    assert make_agent(live_server, tmp_path / "work", slots=1).run() == 0
    records = by_key(client, campaign_id)
    assert {k: (r.state, r.result) for k, r in records.items()} == {
        s.key: ("done", {"count": 6 if s.key in resumed else 3, "restored": s.key in resumed})
        for s in specs
    }


def test_a_running_command_is_checkpointed_and_a_shutdown_hands_it_on(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    campaign_id = submit(
        client,
        spec(
            key="long",
            command=counter_command(tmp_path, "wait"),
            run_args={"checkpoint_interval": 0.2},
        ),
    )
    first = Running(make_agent(live_server, tmp_path / "one", slots=1, exit_when_idle=None))
    probe.wait_until(lambda: (tmp_path / "waiting").exists(), what="the first attempt to wait")

    def checkpointed() -> bool:
        runs = by_key(client, campaign_id)["long"].runs
        return bool(runs and runs[-1].checkpoint)

    probe.wait_until(checkpointed, what="a periodic checkpoint")
    first.agent.stop("test")
    assert first.finish(60) == 0
    assert first.agent.counts["released"] == 1

    second = make_agent(live_server, tmp_path / "two", slots=1)
    assert second.run() == 0
    record = by_key(client, campaign_id)["long"]
    assert record.state == "done"
    assert record.result == {"count": 6, "restored": True}
    assert [r.state for r in record.runs or []] == ["released", "done"]


def test_parents_archives_are_unpacked_when_asked(live_server: LiveServer, tmp_path: Path) -> None:
    client = live_server.client()
    campaign_id = submit(
        client,
        spec(key="relax", command="mkdir out; echo -3.5 > out/energy; echo '{}' > results.json"),
        spec(
            key="evil",
            command="ln -s /etc/passwd stolen",  # archived as a link: children refuse it
        ),
        spec(
            key="child",
            command="cat parents/relax/out/energy > energy; "
            """printf '{"e": %s}' "$(cat parents/relax/out/energy)" > results.json""",
            parents=["relax"],
            run_args={"unpack_parents": True},
        ),
        spec(key="blind", command="test ! -e parents/relax/out", parents=["relax"]),
        spec(
            key="victim",
            command="true",
            parents=["evil"],
            run_args={"unpack_parents": True},
        ),
    )
    assert make_agent(live_server, tmp_path / "work", slots=2).run() == 0
    records = by_key(client, campaign_id)
    assert records["child"].state == "done", records["child"].error
    assert records["child"].result == {"e": -3.5}
    assert records["blind"].state == "done"  # without unpack_parents: results.json only
    victim = records["victim"]
    assert victim.state == "orphaned"
    assert "symlink 'stolen' points to the absolute path '/etc/passwd'" in (victim.error or "")
    assert victim.attempts == 0


@pytest.mark.parametrize("size", ["small", "large"])
def test_an_archive_waits_in_the_outbox_while_the_server_is_away(
    live_server: LiveServer, tmp_path: Path, probe: Probe, size: str
) -> None:
    client = live_server.client()
    gate = tmp_path / "gate"
    # Random bytes do not compress: 100 kB make an archive over run_archive.IN_MEMORY.
    noise = "head -c 100000 /dev/urandom > noise.bin; " if size == "large" else ""
    campaign_id = submit(
        client,
        spec(
            key="offline",
            command=f"echo started > started; while [ ! -e {gate} ]; do sleep 0.05; done; "
            f"{noise}echo made-offline > out.dat",
        ),
    )
    work = tmp_path / "work"
    running = Running(make_agent(live_server, work, slots=1, exit_when_idle=2.0))
    probe.wait_until(lambda: list(work.glob("runs/*/offline/*/started")), what="the command")
    live_server.stop()
    gate.touch()
    archives = work / "outbox" / "archives"
    # The archive is written before the entry that names it: wait for the entry.
    probe.wait_until(
        lambda: list((work / "outbox").glob("[0-9]*.json")), what="the report in the outbox"
    )
    (entry,) = list((work / "outbox").glob("[0-9]*.json"))
    document = json.loads(entry.read_text())
    sha = document["body"]["archive"]
    if size == "large":  # a file of its own, which the entry names
        assert document["archive_file"] == str(next(archives.glob("*.tar.gz")))
        assert document["archive_data"] is None
    else:  # its bytes in the entry itself, spooled with the report: no file
        assert document["archive_file"] is None and list(archives.iterdir()) == []
        assert hashlib.sha256(base64.b64decode(document["archive_data"])).hexdigest() == sha
    live_server.start()
    assert running.finish(120) == 0
    client = live_server.client()
    record = by_key(client, campaign_id)["offline"]
    assert record.state == "done" and record.runs
    assert record.runs[-1].archive == sha
    files = read_archive(client, record.runs[-1].archive, tmp_path / "offline.tar.gz")
    assert files["out.dat"] == b"made-offline\n"
    assert ("noise.bin" in files) == (size == "large")
    assert list(archives.iterdir()) == []
    assert not run_path(work, campaign_id, "offline", record.runs[-1].id).exists()


def test_inputs_download_while_the_slot_is_busy(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    data = upload(client, tmp_path, "data", os.urandom(1024))
    gate = tmp_path / "gate"
    campaign_id = submit(
        client,
        spec(key="a", command=f"while [ ! -e {gate} ]; do sleep 0.05; done", priority=1),
        spec(key="b", command="cmp data.bin data.bin", inputs={"data.bin": data}),
    )
    work = tmp_path / "work"
    running = Running(make_agent(live_server, work, slots=1, prefetch=1))
    # "b" waits for the one slot, staged: its input is in place before "a" ends.
    staged = threading.Event()

    def b_is_staged() -> bool:
        if list(work.glob("runs/*/b/*/data.bin")):
            staged.set()
        return staged.is_set()

    probe.wait_until(b_is_staged, what="b's input staged while a runs")
    assert not gate.exists()
    gate.touch()
    assert running.finish(60) == 0
    assert {k: r.state for k, r in by_key(client, campaign_id).items()} == {
        "a": "done",
        "b": "done",
    }
