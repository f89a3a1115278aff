"""An attempt gives its command slot back as soon as its command ends: packing and uploading
its archive, and its report, never hold a slot (issue 16). A real server and an in-process
agent with one slot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from farmhand import wire
from farmhand.runtime import outcomes
from tests.conftest import LiveServer
from tests.runtime.test_agent import Running, make_agent


def test_the_next_command_starts_while_the_last_archive_is_packed(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation caught: freeing the slot only when the attempt ends (after its archive is
    packed): the second command cannot start while the first archive waits for it, and the
    gate below runs out."""
    started = tmp_path / "second-started"
    client = live_server.client()
    campaign = client.create_campaign("slots")
    client.submit(
        campaign.id,
        [
            wire.RecordSpec(key="first", command="echo one > out.txt", priority=9),
            wire.RecordSpec(key="second", command=f"touch {started}"),
        ],
    )
    pack = outcomes.run_archive.archive
    waited: dict[str, bool] = {}

    def gated_pack(lease: wire.Lease, *args: Any, **kwargs: Any) -> Any:
        if lease.key == "first":  # hold this archive until the next command has run
            waited["second ran"] = wait_for_file(started, timeout=30)
        return pack(lease, *args, **kwargs)

    monkeypatch.setattr(outcomes.run_archive, "archive", gated_pack)
    agent = make_agent(live_server, tmp_path / "work", slots=1)
    assert Running(agent).finish(timeout=120) == 0
    assert waited == {"second ran": True}
    states = {r.key: (r.state, r.attempts) for r in client.records(campaign_id=campaign.id)}
    assert states == {"first": ("done", 1), "second": ("done", 1)}
    (first,) = [r for r in client.records(campaign_id=campaign.id) if r.key == "first"]
    assert client.record(first.id).runs[0].archive is not None  # it was packed all the same


def wait_for_file(path: Path, timeout: float) -> bool:
    """Wait for `path` to exist; False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
