"""Group commit in the outbox (issue 16): reports put together share one file and one
fsync, a group is settled entry by entry, and nothing `put` returned for is lost on kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime import outbox as outbox_module
from farmhand.runtime.files import spool
from farmhand.runtime.outbox import BATCH, LINGER, Entry, Outbox
from tests.runtime.test_outbox import Outcomes, complete, running_leases, spooled

if TYPE_CHECKING:
    from tests.conftest import LiveServer

NOWHERE = "http://127.0.0.1:9"  # nothing listens: these outboxes never deliver


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    """Until `condition()` holds (checked every few ms), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_reports_put_while_a_write_runs_share_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[tuple[str, int]] = []
    first_write_may_end = threading.Event()
    real_write = spool.write_durably

    def write_durably(path: Path, text: str) -> None:
        found = json.loads(text)
        writes.append((path.name, len(found["entries"]) if "entries" in found else 1))
        if len(writes) == 1:
            assert first_write_may_end.wait(30)
        real_write(path, text)

    monkeypatch.setattr(spool, "write_durably", write_durably)
    outbox = Outbox(tmp_path / "outbox", FarmhandClient(NOWHERE))
    outbox.open()

    def put(n: int) -> None:
        outbox.put(1000 + n, "complete", wire.RunComplete(token=f"t{n}", result={"n": n}), f"k{n}")

    first = threading.Thread(target=put, args=(0,))
    first.start()
    wait_for(lambda: len(writes) == 1, "the first write")
    others = [threading.Thread(target=put, args=(n,)) for n in range(1, 8)]
    for thread in others:
        thread.start()
    wait_for(lambda: len(outbox._writer.unwritten) == 7, "seven reports waiting for the write")
    assert len(outbox) == 0  # none of them is acknowledged before it is on disk
    first_write_may_end.set()
    for thread in [first, *others]:
        thread.join(30)
    assert [count for _, count in writes] == [1, 7]  # two fsyncs for eight reports
    assert writes[1][0].endswith(".group.json")
    assert len(outbox) == 8
    # Each entry knows the bytes of its own document (what a delivery batch counts).
    group_file = tmp_path / "outbox" / writes[1][0]
    documents = json.loads(group_file.read_text())["entries"]
    sizes = {e.seq: e.size for e in outbox._entries}
    assert all(sizes[d["seq"]] == len(json.dumps(d)) > 0 for d in documents)

    # The next process reads both files back, every report in order.
    again = Outbox(tmp_path / "outbox", FarmhandClient(NOWHERE))
    again.open()
    assert again.inherited == 8
    assert [e.seq for e in again._entries] == list(range(1, 9))
    assert again._entries[0].body["result"] == {"n": 0}
    assert sorted(e.run_id for e in again._entries) == [1000 + n for n in range(8)]


def test_a_group_is_settled_report_by_report(live_server: LiveServer, tmp_path: Path) -> None:
    """A group file left by an earlier process: a report the server refuses is set aside
    alone, one it already applied (a crash after part of the group was settled) is a repeat
    with the same answer, and the file goes once all of them are settled."""
    client = live_server.client()
    applied, fresh = running_leases(client, 2)
    (answer,) = client.report_many([wire.RunReport(run_id=applied.run_id, token=applied.token)])
    assert answer.ack is not None
    directory = tmp_path / "outbox"
    directory.mkdir()
    bodies = [
        (applied.run_id, wire.RunComplete(token=applied.token)),
        (999_999, wire.RunComplete(token="nope")),
        (fresh.run_id, complete(fresh, 7)),
    ]
    group = [
        Entry(seq, run_id, "complete", body.model_dump(mode="json"), f"k{seq}")
        for seq, (run_id, body) in enumerate(bodies, start=1)
    ]
    (directory / spool.group_name(group)).write_text(spool.group_document(group))
    outcomes = Outcomes()
    outbox = Outbox(directory, client, outcomes)
    outbox.open()
    assert outbox.inherited == 3
    while len(outbox):
        outbox.deliver_some()
    assert [(run_id, state) for run_id, _, state, _ in outcomes.seen] == [
        (applied.run_id, "done"),
        (999_999, None),
        (fresh.run_id, "done"),
    ]
    assert outcomes.seen[0][3] is None  # the repeat got its answer, not a conflict
    assert spooled(directory) == []
    (kept,) = (directory / "rejected").iterdir()
    assert kept.name == "000000000002-999999.json"
    assert json.loads(kept.read_text())["body"]["token"] == "nope"
    assert client.record(fresh.record_id).result == {"n": 7}


CRASHER = """
import sys, threading
from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.outbox import Outbox

outbox = Outbox(sys.argv[1], FarmhandClient("http://127.0.0.1:9"))
outbox.open()
lock = threading.Lock()

def work(worker):
    for n in range(100_000):
        entry = outbox.put(worker * 1_000_000 + n, "complete",
                           wire.RunComplete(token="t", result={"n": n}), "k")
        with lock:
            print(entry.seq, flush=True)

for worker in range(8):
    threading.Thread(target=work, args=(worker,)).start()
"""


def test_nothing_put_returned_for_is_lost_on_kill_9(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) == 2_000:
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(30)
    assert len(acknowledged) == 2_000, "the writer ended before it was killed"
    entries, unreadable, _ = spool.load(directory)
    assert unreadable == []
    kept = {entry.seq for entry in entries}
    assert set(acknowledged) <= kept
    assert len(kept) == len(entries)  # no report twice
    groups = [p for p in directory.iterdir() if p.name.endswith(".group.json")]
    assert len(entries) > len(groups) + len(list(directory.glob("*[0-9].json")))  # grouped


def test_a_delivery_waits_for_its_oldest_report_to_linger(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", FarmhandClient(NOWHERE))
    outbox.open()
    entry = outbox.put(1001, "complete", wire.RunComplete(token="t1", result={}), "k1")
    outbox._linger()  # what the delivery thread does before each request
    # Reports that end within LINGER of it go in the same request.
    assert time.monotonic() - entry.queued_at >= LINGER


def test_a_full_batch_does_not_linger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "LINGER", 3600.0)  # a wait would hang the test
    outbox = Outbox(tmp_path / "outbox", FarmhandClient(NOWHERE))
    outbox.open()
    for n in range(BATCH):
        outbox.put(2000 + n, "complete", wire.RunComplete(token=f"t{n}", result={}), f"k{n}")
    waiter = threading.Thread(target=outbox._linger)
    waiter.start()
    waiter.join(30)
    assert not waiter.is_alive()
    outbox.stop()


def test_a_group_file_is_the_json_of_its_entries_documents() -> None:
    documents = [json.dumps({"seq": 1, "body": {"x": [1, 2]}}), json.dumps({"seq": 2})]
    text = spool.join_group(documents)
    assert text == json.dumps({"entries": [json.loads(d) for d in documents]})
