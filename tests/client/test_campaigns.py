"""The Python API's campaign handle against a real server: get or create by name, sweeps,
retry and cancel by filter, results rows, `as_completed` with a timeout, and its errors."""

from __future__ import annotations

import pytest

import farmhand
from farmhand import wire
from farmhand.client import FarmhandClient, UsageError
from tests.conftest import LiveServer


def fail_all(client: FarmhandClient, campaign_id: int) -> list[str]:
    agent = client.register(wire.AgentRegister(name="by-hand", host="test", slots=1))
    leases = client.claim(agent.agent.id, wire.MAX_CLAIM, campaign_id=campaign_id)
    for lease in leases:
        client.fail(lease.run_id, wire.RunFail(token=lease.token, error="boom", exit_code=1))
    return [lease.key for lease in leases]


def test_a_campaign_handle_end_to_end(live_server: LiveServer) -> None:
    fh = farmhand.connect(live_server.url, live_server.admin_token)
    c = fh.campaign("eos", defaults={"max_attempts": 1})
    assert fh.campaign("eos").id == c.id == fh.campaign("eos:1").id == fh.campaign(c.id).id
    made = c.sweep("relax --T {T} --a {a}", T=[300, 600], a=[4.0, 4.1], dataset="d1")
    assert made.created == 4
    assert sorted(r.key for r in c.records(where="T>=600")) == ["T=600,a=4.0", "T=600,a=4.1"]
    assert fail_all(fh.client, c.id)
    changed = c.retry(state="failed", where=["T>=600", "a>4"])
    assert [fh.client.record(i).key for i in changed.changed] == ["T=600,a=4.1"]
    assert c.count(state="failed", key_prefix="T=3").total == 2
    assert c.count(tag="none").total == 0
    cancelled = c.cancel(where="T=600")
    assert [fh.client.record(i).key for i in cancelled.changed] == ["T=600,a=4.1"]
    assert [s.key for s in cancelled.skipped] == ["T=600,a=4.0"]  # failed: nothing to cancel
    rows = c.results()
    assert [(row["key"], row["state"], row["T"], row["a"]) for row in rows] == [
        ("T=300,a=4.0", "failed", 300, 4.0),
        ("T=300,a=4.1", "failed", 300, 4.1),
        ("T=600,a=4.0", "failed", 600, 4.0),
        ("T=600,a=4.1", "cancelled", 600, 4.1),
    ]
    assert rows.to_pandas().shape == (4, len(rows[0]))
    assert sorted(r.key for r in c.as_completed(timeout=10)) == sorted(row["key"] for row in rows)
    assert c.wait(timeout=10) == {"failed": 3, "cancelled": 1}


def test_as_completed_times_out_while_records_wait(live_server: LiveServer) -> None:
    c = farmhand.connect(live_server.url, live_server.admin_token).campaign("slow")
    c.submit([farmhand.Record(key="never", command="true")])
    with pytest.raises(TimeoutError, match="have not ended"):
        list(c.as_completed(timeout=0.3, poll=0.1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda fh: fh.campaign("eos:9"), "has no version 9"),
        (lambda fh: fh.campaign("eos:x"), "is not NAME or NAME:VERSION"),
        (lambda fh: fh.campaign("eos").sweep("run {x}", T=[1]), "placeholder {x} is not a param"),
        (lambda fh: fh.campaign("eos").sweep("run"), "at least one param list"),
        (lambda fh: list(fh.campaign("eos").records(where="T=>1")), "is not NAME OP VALUE"),
        (lambda fh: fh.campaign("eos").submit([], inputs=["/nonexistent/file"]), "cannot read"),
    ],
)
def test_usage_errors_are_raised_before_anything_is_sent(
    live_server: LiveServer, call, message: str
) -> None:
    fh = farmhand.connect(live_server.url, live_server.admin_token)
    with pytest.raises(UsageError, match=message):
        call(fh)
    assert all(c.counts.get(wire.RecordState.ready, 0) == 0 for c in fh.client.campaigns())
