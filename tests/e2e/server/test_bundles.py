"""Export/import between two real servers, and backup/restore of a server under load, all
through the `farmhand` command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from farmhand import wire
from farmhand.cli.demo import free_port
from tests.conftest import FARMHAND, LiveServer
from tests.e2e.conftest import StartAgent


def farmhand(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FARMHAND, *args], env=server.client_env(), capture_output=True, text=True, timeout=300
    )


def state_of(server: LiveServer, campaign: str) -> dict[str, tuple]:
    """Everything a bundle carries of each record, by key, minus this server's ids."""
    client = server.client()
    (c,) = [c for c in client.campaigns(name=campaign)]
    out = {}
    for record in client.records(campaign_id=c.id):
        full = client.record(record.id)
        runs = tuple(
            (r.attempt, r.state.value, r.exit_code, r.error, r.stdout_tail, r.archive)
            for r in full.runs or []
        )
        out[record.key] = (
            record.command,
            record.state.value,
            record.attempts,
            repr(record.result),
            tuple(record.parents),
            tuple(sorted(record.inputs.items())),
            runs,
        )
    return out


def snapshot_names(server: LiveServer) -> set[str]:
    return {s.sha256 for s in server.client().snapshots()}


CAMPAIGN = """
[campaign]
name = "relax"
inputs = ["pot.eam"]
[campaign.defaults]
max_attempts = 1
"""


def record(key: str, command: str, *parents: str) -> str:
    return (
        f'[[records]]\nkey = "{key}"\ncommand = """{command}"""\nparents = {json.dumps(parents)}\n'
    )


def test_export_then_import_twice_gives_identical_records_and_snapshots(
    live_server_factory: Callable[..., LiveServer], agents: StartAgent, tmp_path: Path
) -> None:
    source, target = live_server_factory(), live_server_factory()
    (tmp_path / "pot.eam").write_bytes(b"Al potential\n" * 1000)
    (tmp_path / "relax.py").write_bytes(b"print('relax')\n")
    toml = tmp_path / "relax.toml"
    toml.write_text(
        CAMPAIGN
        + "".join(
            record(f"r{i}", f"echo '{{\"i\": {i}}}' > results.json") + 'inputs = ["relax.py"]\n'
            for i in range(4)
        )
        + record("child", "echo '{}' > results.json", "r0", "r1")
        + record("broken", "echo oops >&2; exit 3")
        + record("later", "true", "broken")
    )
    r = farmhand(source, "submit", str(toml))
    assert r.returncode == 0, r.stderr
    agent = agents(source, "a", "--slots", "2", "--exit-when-idle", "2")
    assert agent.wait(timeout=120) == 0
    theirs = state_of(source, "relax")
    assert theirs["r0"][1] == "done" and theirs["broken"][1] == "failed"
    assert theirs["later"][1] == "failed"  # upstream failed

    bundle = tmp_path / "relax.tar"
    r = farmhand(source, "export", "--campaign", "relax", "-o", str(bundle))
    assert r.returncode == 0, r.stderr
    assert "exported relax:1: 7 records" in r.stdout

    r = farmhand(target, "import", str(bundle))
    assert r.returncode == 0, r.stderr
    assert "imported relax:1 (created here)" in r.stdout and ": 7 new, 0 merged" in r.stdout
    first = state_of(target, "relax")
    snapshots = snapshot_names(target)
    r = farmhand(target, "import", str(bundle))
    assert r.returncode == 0, r.stderr
    assert "0 new, 0 merged (done in the bundle), 7 unchanged" in r.stdout
    assert f"snapshots: 0 uploaded, {len(snapshots)} already here" in r.stdout
    assert state_of(target, "relax") == first == theirs
    assert snapshot_names(target) == snapshots
    referenced = {sha for rec in first.values() for _, sha in rec[5]}
    referenced |= {run[5] for rec in first.values() for run in rec[6] if run[5]}
    assert referenced and snapshots == referenced <= snapshot_names(source)

    # The same key with another spec here: reported, left untouched.
    forced = tmp_path / "forced.toml"
    forced.write_text(record("broken", "echo changed"))
    assert farmhand(target, "submit", str(forced), "--campaign", "relax", "--force").returncode == 0
    r = farmhand(target, "import", str(bundle), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["conflicts"] == [
        {"key": "broken", "differs": ["command", "inputs"]}
    ]
    r = farmhand(target, "import", str(bundle))
    assert "conflict: record 'broken' differs in command, inputs; left untouched" in r.stderr
    assert state_of(target, "relax")["broken"][0] == "echo changed"


def test_backup_under_load_restores_every_acknowledged_record_and_snapshot(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server_factory()
    client = server.client()
    campaign = client.create_campaign("load")
    acknowledged: list[tuple[str, str]] = []  # (record key, snapshot) the server took
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with server.client() as writer:
                i = 0
                while not stop.is_set():
                    data = os.urandom(2048) + str(i).encode()
                    blob = tmp_path / f"blob-{i}"
                    blob.write_bytes(data)
                    sha = writer.upload_snapshot(blob)
                    spec = wire.RecordSpec(key=f"k{i}", command="true", inputs={"in": sha})
                    writer.submit(campaign.id, [spec])
                    acknowledged.append((spec.key, sha))
                    i += 1
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(acknowledged) < 20 and writer.is_alive():
            stop.wait(0.05)
        before = list(acknowledged)  # taken before the backup starts
        out = tmp_path / "backup.tar"
        r = farmhand(server, "backup", "-o", str(out))
        after = len(acknowledged)
        while len(acknowledged) == after and writer.is_alive():  # it wrote on throughout
            stop.wait(0.05)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not errors, errors
    if server.env["FARMHAND_DATABASE_URL"].startswith("postgresql"):
        assert r.returncode == 1 and "back it up with pg_dump" in r.stderr
        assert not out.exists()
        return
    assert r.returncode == 0, r.stderr

    restored = tmp_path / "restored"
    r = farmhand(server, "restore", str(out), "--data-dir", str(restored))
    assert r.returncode == 0, r.stderr
    copy = _start_on(restored, server, tmp_path)
    try:
        keys = {record.key for record in copy.client().records(campaign_id=campaign.id)}
        assert {key for key, _ in before} <= keys
        assert keys <= {key for key, _ in acknowledged}
        names = snapshot_names(copy)
        assert {sha for _, sha in before} <= names
        key, sha = before[-1]
        got = copy.client().download_snapshot(sha, tmp_path / "got")
        assert hashlib.sha256(got.read_bytes()).hexdigest() == sha
        (record,) = copy.client().records_page(key=key).items
        assert record.inputs == {"in": sha}
    finally:
        copy.stop()


def _start_on(data_dir: Path, like: LiveServer, tmp_path: Path) -> LiveServer:
    """A server on a restored data directory (its SQLite database, its blobs)."""
    port = free_port()
    env = {k: v for k, v in like.env.items() if k != "FARMHAND_DATABASE_URL"}
    server = LiveServer(
        url=f"http://127.0.0.1:{port}",
        data_dir=data_dir,
        admin_token=like.admin_token,
        env=env,
        port=port,
        log=tmp_path / "restored.log",
    )
    server.start()
    return server
