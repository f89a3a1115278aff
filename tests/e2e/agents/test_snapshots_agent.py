"""Snapshots end to end with real `farmhand agent` processes: inputs shared by many records
are downloaded once, every run's archive holds its results and logs, parents' archives are
unpacked for children that ask, and a checkpointing task whose agent is killed -9 resumes
from its checkpoint on the next agent."""

from __future__ import annotations

import json
import os
import signal
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import wait_for
from tests.e2e.conftest import StartAgent

pytestmark = pytest.mark.e2e


def archive_files(client: FarmhandClient, sha256: str | None, dest: Path) -> dict[str, bytes]:
    """The regular files in a snapshot tar.gz, by name."""
    assert sha256 is not None, "no archive"
    client.download_snapshot(sha256, dest)
    with tarfile.open(dest) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def test_shared_inputs_archives_and_parents_archives(
    live_server: LiveServer, tmp_path: Path, agents: StartAgent
) -> None:
    client = live_server.client()
    shared = tmp_path / "Al.eam"
    shared.write_text("shared potential\n")
    sha = client.upload_snapshot(shared)  # once, through the HTTP API
    assert client.has_snapshot(sha)
    read = (
        "cat pot/Al.eam > seen.txt; echo $FARMHAND_RECORD_KEY >&2; "
        """printf '{"seen": "%s"}' "$(cat pot/Al.eam)" > results.json"""
    )
    specs = [
        wire.RecordSpec(key=f"r{i}", command=read, inputs={"pot/Al.eam": sha}) for i in range(5)
    ]
    specs.append(
        wire.RecordSpec(
            key="child",
            command="""printf '{"parent": "%s"}' "$(cat parents/r0/seen.txt)" > results.json""",
            parents=["r0"],
            run_args={"unpack_parents": True},
        )
    )
    campaign = client.create_campaign("shared")
    assert client.submit(campaign.id, specs).created == 6
    agent = agents(live_server, "a", "--slots", "2", "--prefetch", "2", "--exit-when-idle", "3")
    assert agent.wait(timeout=120) == 0

    records = {r.key: client.record(r.id) for r in client.records(campaign_id=campaign.id)}
    assert {k: (r.state, r.result) for k, r in records.items()} == {
        **{f"r{i}": ("done", {"seen": "shared potential"}) for i in range(5)},
        "child": ("done", {"parent": "shared potential"}),
    }
    # One download for five runs: one file in the cache, one line in the log (the cache
    # also holds r0's archive, which the child unpacked).
    work = tmp_path / "work-a"
    parent_archive = records["r0"].runs[-1].archive  # type: ignore[index]
    assert {p.name for p in (work / "cache").iterdir()} == {sha, parent_archive}
    log = (tmp_path / "agent-a.log").read_text()
    assert log.count(f"downloaded snapshot {sha}") == 1
    for key, record in records.items():
        assert record.runs
        files = archive_files(client, record.runs[-1].archive, tmp_path / f"{key}.tar.gz")
        assert {"results.json", "stdout.txt", "stderr.txt"} <= set(files)
        assert json.loads(files["results.json"]) == record.result
        if key != "child":
            assert files["stderr.txt"] == f"{key}\n".encode()
            assert "pot/Al.eam" not in files  # the input is on the server already
    assert list((work / "runs").glob("*/*/*")) == []  # every run directory left with its archive


RESUMER = r"""
import json, os, pathlib, sys, time
box = pathlib.Path(os.environ["FARMHAND_CHECKPOINT_DIR"])
state = box / "counter.json"
restored = os.environ.get("FARMHAND_RESTORED") == "1"
count = json.loads(state.read_text())["count"] if restored else 0
for _ in range(5):
    count += 1
    (box / "counter.tmp").write_text(json.dumps({"count": count}))
    (box / "counter.tmp").rename(state)
pathlib.Path("results.json").write_text(json.dumps({"count": count, "restored": restored}))
if not restored:
    pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
    time.sleep(600)  # the agent is killed meanwhile
"""


def test_a_checkpointing_task_killed_mid_run_resumes_from_its_checkpoint(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, agents: StartAgent
) -> None:
    server = live_server_factory(lease_ttl=4, sweep_interval=0.5)
    client = server.client()
    script = tmp_path / "resumer.py"
    script.write_text(RESUMER)
    pid_file = tmp_path / "task.pid"
    campaign = client.create_campaign("resume")
    spec = wire.RecordSpec(key="long", command=f"{sys.executable} {script} {pid_file}")
    client.submit(campaign.id, [spec])
    record_id = next(client.records(campaign_id=campaign.id)).id

    first = agents(server, "a", "--slots", "1", "--checkpoint-interval", "0.5")
    task = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the task"))

    def checkpoint() -> str | None:
        runs = client.record(record_id).runs
        return runs[-1].checkpoint if runs else None

    sha = wait_for(checkpoint, what="a periodic checkpoint on the server")
    saved = archive_files(client, sha, tmp_path / "checkpoint.tar.gz")
    assert json.loads(saved["counter.json"]) == {"count": 5}
    first.send_signal(signal.SIGKILL)  # no release, no final checkpoint: the lease must expire
    first.wait(timeout=30)
    os.kill(task, signal.SIGKILL)  # its command, left behind in its own process group
    wait_for(lambda: client.record(record_id).state == "ready", what="the lease to expire")

    second = agents(server, "b", "--slots", "1", "--exit-when-idle", "3")
    assert second.wait(timeout=120) == 0
    record = client.record(record_id)
    assert record.state == "done", record.error
    assert record.result == {"count": 10, "restored": True}
    assert [r.state for r in record.runs or []] == ["lost", "done"]
