"""The outbox against a real server process: durable, ordered, retried, taken over."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.outbox import Entry, Outbox

if TYPE_CHECKING:
    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe
    from tests.support.filesystems import SmallFilesystem


class Outcomes:
    """What the outbox reported back, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str | None, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, entry: Entry, ack: wire.RunAck | None, problem: str | None) -> None:
        state = ack.record_state.value if ack is not None else None
        with self.lock:
            self.seen.append((entry.run_id, entry.verb, state, problem))


def running_leases(client: FarmhandClient, count: int) -> list[wire.Lease]:
    """`count` records claimed by a new agent, their commands started."""
    campaign = client.create_campaign("outbox")
    specs = [wire.RecordSpec(key=f"k{i}", command="true") for i in range(count)]
    client.submit(campaign.id, specs)
    agent = client.register(wire.AgentRegister(name="o", host="test", slots=count)).agent
    leases = client.claim(agent.id, count)
    assert len(leases) == count
    for lease in leases:
        client.start(lease.run_id, lease.token)
    return leases


def spooled(directory: Path) -> list[str]:
    """The files in an outbox directory (not its archives/ and rejected/ directories)."""
    return sorted(p.name for p in directory.iterdir() if not p.is_dir())


def complete(lease: wire.Lease, n: int) -> wire.RunComplete:
    return wire.RunComplete(token=lease.token, result={"n": n}, stdout_tail=f"out {n}")


def test_reports_are_spooled_then_delivered_in_order(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    leases = running_leases(client, 4)
    outcomes = Outcomes()
    outbox = Outbox(tmp_path / "outbox", client, outcomes)
    outbox.open()
    outbox.put(leases[0].run_id, "complete", complete(leases[0], 0), "k0")
    outbox.put(leases[1].run_id, "fail", wire.RunFail(token=leases[1].token, error="boom"), "k1")
    outbox.put(leases[2].run_id, "release", wire.RunRelease(token=leases[2].token), "k2")
    outbox.put(leases[3].run_id, "complete", complete(leases[3], 3), "k3")
    # Durable before delivery: one file per report, named in order, carrying its token.
    files = spooled(tmp_path / "outbox")
    assert files == [f"{i + 1:012d}-{lease.run_id}.json" for i, lease in enumerate(leases)]
    first = json.loads((tmp_path / "outbox" / files[0]).read_text())
    assert first["verb"] == "complete" and first["body"]["token"] == leases[0].token
    assert sorted(outbox.pending_run_ids()) == sorted(lease.run_id for lease in leases)

    outbox.start()
    try:
        assert outbox.flush(30)
    finally:
        outbox.stop()
    assert spooled(tmp_path / "outbox") == []
    assert outcomes.seen == [
        (leases[0].run_id, "complete", "done", None),
        (leases[1].run_id, "fail", "ready", None),
        (leases[2].run_id, "release", "ready", None),
        (leases[3].run_id, "complete", "done", None),
    ]
    done = client.record(leases[0].record_id)
    assert done.result == {"n": 0} and done.runs is not None
    assert done.runs[0].stdout_tail == "out 0"
    released = client.record(leases[2].record_id)
    assert (released.state, released.attempts) == ("ready", 0)


def test_every_verb_travels_in_one_batch(live_server: LiveServer, tmp_path: Path) -> None:
    """Orphans and releases go through `POST /runs/reports` with the rest (issue 16): one
    request settles all four, in order."""
    client = live_server.client()
    leases = running_leases(client, 4)
    outcomes = Outcomes()
    outbox = Outbox(tmp_path / "outbox", client, outcomes)
    outbox.open()
    outbox.put(leases[0].run_id, "complete", complete(leases[0], 0), "k0")
    orphan = wire.RunOrphan(token=leases[1].token, reason="cannot stage the run directory")
    outbox.put(leases[1].run_id, "orphan", orphan, "k1")
    outbox.put(leases[2].run_id, "release", wire.RunRelease(token=leases[2].token), "k2")
    outbox.put(leases[3].run_id, "fail", wire.RunFail(token=leases[3].token, error="x"), "k3")
    assert outbox.deliver_some() == 4
    assert outcomes.seen == [
        (leases[0].run_id, "complete", "done", None),
        (leases[1].run_id, "orphan", "orphaned", None),
        (leases[2].run_id, "release", "ready", None),
        (leases[3].run_id, "fail", "ready", None),
    ]
    orphaned = client.record(leases[1].record_id)
    assert (orphaned.state, orphaned.attempts) == ("orphaned", 0)
    assert orphaned.error is not None and "cannot stage the run directory" in orphaned.error
    assert client.record(leases[2].record_id).attempts == 0


def test_reports_wait_for_a_server_that_is_down(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    (lease,) = running_leases(live_server.client(), 1)
    live_server.stop()
    with FarmhandClient(live_server.url, live_server.admin_token) as client:
        outbox = Outbox(tmp_path / "outbox", client, max_pause=1.0)
        outbox.open()
        outbox.start()
        try:
            outbox.put(lease.run_id, "complete", complete(lease, 7), "k0")
            probe.wait_until(lambda: outbox.last_error is not None, what="a failed delivery")
            assert "cannot reach" in (outbox.last_error or "")
            assert len(list((tmp_path / "outbox").glob("[0-9]*.json"))) == 1
            live_server.start()
            assert outbox.flush(30)
        finally:
            outbox.stop()
    assert outbox.last_error is None and outbox.delivered == 1
    record = live_server.client().record(lease.record_id)
    assert (record.state, record.result) == ("done", {"n": 7})


def test_a_new_process_delivers_what_an_earlier_one_left(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    leases = running_leases(client, 2)
    earlier = Outbox(tmp_path / "outbox", client)
    earlier.open()
    for n, lease in enumerate(leases):
        earlier.put(lease.run_id, "complete", complete(lease, n), f"k{n}")
    # The earlier process dies here, its thread never having run; a new one starts with
    # nothing but the directory: no leases, no agent id.
    with FarmhandClient(live_server.url, live_server.admin_token) as fresh:
        outcomes = Outcomes()
        later = Outbox(tmp_path / "outbox", fresh, outcomes)
        later.open()
        assert later.inherited == 2 and len(later) == 2
        assert later.pending_run_ids() == []  # their leases are not this process's to renew
        later.start()
        try:
            assert later.flush(30)
        finally:
            later.stop()
    assert [(run_id, state) for run_id, _, state, _ in outcomes.seen] == [
        (lease.run_id, "done") for lease in leases
    ]
    # A report delivered twice (both processes) is harmless: the same answer again.
    again = client.complete(leases[0].run_id, complete(leases[0], 0))
    assert again.record_state == "done"


def test_a_small_archive_spooled_with_its_report_reaches_the_server_after_a_restart(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    (lease,) = running_leases(client, 1)
    data = b"a tar.gz, say" * 10
    sha = hashlib.sha256(data).hexdigest()
    earlier = Outbox(tmp_path / "outbox", client)
    earlier.open()
    body = complete(lease, 0)
    body.archive = sha
    earlier.put(lease.run_id, "complete", body, "k0", archive_data=data)
    assert list((tmp_path / "outbox" / "archives").iterdir()) == []  # no file of its own
    # The earlier process dies before delivering: its file alone holds the archive.
    later = Outbox(tmp_path / "outbox", client)
    later.open()
    assert [entry.archive_data for entry in later._entries] == [data]
    while len(later):
        later.deliver_some()
    assert client.record(lease.record_id).runs[-1].archive == sha
    assert client.download_snapshot(sha, tmp_path / "got").read_bytes() == data


def test_an_entry_whose_archive_bytes_are_spoilt_is_set_aside(tmp_path: Path) -> None:
    spool = tmp_path / "outbox"
    spool.mkdir()
    entry = {"verb": "complete", "body": {"token": "t"}, "archive_data": "not base64!"}
    (spool / "000000000001-77.json").write_text(json.dumps(entry))
    outbox = Outbox(spool, FarmhandClient("http://127.0.0.1:9", "fh_unused_token"))
    outbox.open()
    assert len(outbox) == 0 and (spool / "rejected" / "000000000001-77.json").exists()


def test_a_report_whose_lease_was_lost_is_dropped(live_server: LiveServer, tmp_path: Path) -> None:
    client = live_server.client()
    (lease,) = running_leases(client, 1)
    client.release(lease.run_id, lease.token, reason="the lease ends before the report")
    outcomes = Outcomes()
    outbox = Outbox(tmp_path / "outbox", client, outcomes)
    outbox.open()
    outbox.put(lease.run_id, "complete", complete(lease, 1), "k0")
    assert outbox.deliver_some() == 1
    ((run_id, verb, state, problem),) = outcomes.seen
    assert (run_id, verb, state) == (lease.run_id, "complete", None)
    assert problem is not None and "already ended as released" in problem
    assert spooled(tmp_path / "outbox") == []  # dropped, not set aside
    assert client.record(lease.record_id).state == "ready"


def test_refused_and_unreadable_entries_are_set_aside(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    (lease,) = running_leases(client, 1)
    spool = tmp_path / "outbox"
    spool.mkdir()
    (spool / "000000000001-77.json").write_text("{torn")
    (spool / ".tmp-000000000002-78.json").write_text("{")  # a crash before the rename
    outcomes = Outcomes()
    outbox = Outbox(spool, client, outcomes)
    outbox.open()
    assert len(outbox) == 0 and not (spool / ".tmp-000000000002-78.json").exists()
    assert (spool / "rejected" / "000000000001-77.json").read_text() == "{torn"
    # A report for a run this server never had: refused for good, kept for a person to read.
    outbox.put(999_999, "complete", wire.RunComplete(token="nope"), "ghost")
    outbox.put(lease.run_id, "complete", complete(lease, 2), "k0")
    while len(outbox):
        outbox.deliver_some()
    assert [(run_id, state) for run_id, _, state, _ in outcomes.seen] == [
        (999_999, None),
        (lease.run_id, "done"),
    ]
    assert "does not exist" in (outcomes.seen[0][3] or "")
    assert (spool / "rejected" / "000000000002-999999.json").exists()


def test_a_full_disk_keeps_the_report_in_memory_and_still_delivers_it(
    live_server: LiveServer, small_fs: SmallFilesystem, caplog: pytest.LogCaptureFixture
) -> None:
    client = live_server.client()
    (lease,) = running_leases(client, 1)
    outbox = Outbox(small_fs.path / "outbox", client)
    outbox.open()
    small_fs.fill()
    entry = outbox.put(lease.run_id, "complete", complete(lease, 5), "k0")
    assert entry.path is None
    assert any("kept in memory only" in r.message for r in caplog.records)
    assert outbox.deliver_some() == 1
    assert client.record(lease.record_id).result == {"n": 5}


def test_big_results_go_fewer_to_a_request(live_server: LiveServer, tmp_path: Path) -> None:
    client = live_server.client()
    leases = running_leases(client, 4)
    outbox = Outbox(tmp_path / "outbox", client)
    outbox.open()
    big = "x" * (3 * 1024 * 1024)  # 3 MiB each: two fit under the 8 MiB a request carries
    for lease in leases:
        body = wire.RunComplete(token=lease.token, result={"blob": big})
        outbox.put(lease.run_id, "complete", body, lease.key)
    assert [outbox.deliver_some(), outbox.deliver_some(), outbox.deliver_some()] == [2, 2, 0]
    record = client.record(leases[3].record_id)
    assert record.state == "done" and record.result == {"blob": big}
