"""`farmhand cancel` and `retry` by filter, `#id` references, and the confirmation above a
thousand records, as a user types them against a real server process."""

from __future__ import annotations

from farmhand import wire
from farmhand.client import FarmhandClient
from tests.cli.test_main import farmhand
from tests.conftest import LiveServer


def fail_all(client: FarmhandClient, campaign_id: int) -> None:
    agent = client.register(wire.AgentRegister(name="by-hand", host="test", slots=1))
    for lease in client.claim(agent.agent.id, wire.MAX_CLAIM, campaign_id=campaign_id):
        client.fail(lease.run_id, wire.RunFail(token=lease.token, error="boom", exit_code=1))


def test_retry_and_cancel_by_filter(live_server: LiveServer) -> None:
    env = live_server.client_env()
    client = live_server.client()
    c = client.create_campaign("eos", defaults={"max_attempts": 1})
    specs = [wire.RecordSpec(key=f"T{T}", command="x", params={"T": T}) for T in (300, 600, 900)]
    client.submit(c.id, specs)
    fail_all(client, c.id)
    client.submit(c.id, [wire.RecordSpec(key="fresh", command="x", params={"T": 950})])

    r = farmhand("retry", "--campaign", "eos", "--state", "failed", "--where", "T>=600", env=env)
    assert (r.returncode, r.stdout) == (0, "re-queued 2 records\n"), r.stderr
    states = {rec.key: rec.state.value for rec in client.records(campaign_id=c.id)}
    assert states == {"T300": "failed", "T600": "ready", "T900": "ready", "fresh": "ready"}

    r = farmhand("cancel", "--campaign", "eos", "--where", "T<=600", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "cancelled 1 records"
    assert lines[1].startswith("skipped T300 (#") and lines[1].endswith(
        "is failed: nothing to cancel"
    )

    r = farmhand("retry", "--campaign", "eos", "--key-prefix", "T3", "--tag", "none", env=env)
    assert (r.returncode, r.stdout) == (0, "re-queued 0 records\n"), r.stderr
    r = farmhand("retry", "--campaign", "eos", "--key-prefix", "T3", env=env)
    assert (r.returncode, r.stdout) == (0, "re-queued 1 records\n"), r.stderr
    r = farmhand("cancel", "--campaign", "eos", "--tag", "no spaces", env=env)
    assert r.returncode == 1 and "tag" in r.stderr

    r = farmhand("cancel", "T900", "--campaign", "eos", "--state", "ready", env=env)
    assert r.returncode == 1 and "name records or filter them" in r.stderr
    r = farmhand("retry", "--state", "failed", env=env)
    assert r.returncode == 1 and "pass --campaign NAME" in r.stderr
    r = farmhand("cancel", "--campaign", "eos", "--where", "T=>1", env=env)
    assert r.returncode == 1 and "is not NAME OP VALUE" in r.stderr
    # `#id` is an id even with --campaign, where a bare number is a key.
    fresh = next(rec for rec in client.records(campaign_id=c.id) if rec.key == "fresh")
    r = farmhand("cancel", f"#{fresh.id}", "--campaign", "eos", env=env)
    assert r.stdout == "cancelled 1 records\n", r.stderr
    r = farmhand("cancel", str(fresh.id), "--campaign", "eos", env=env)
    assert r.returncode == 1 and f"no record with key '{fresh.id}'" in r.stderr


def test_more_than_a_thousand_need_yes(live_server: LiveServer) -> None:
    env = live_server.client_env()
    client = live_server.client()
    c = client.create_campaign("big")
    client.submit(c.id, [wire.RecordSpec(key=f"k{i}", command="x") for i in range(1001)])
    r = farmhand("cancel", "--campaign", "big", "--all", env=env)
    assert r.returncode == 1 and "1,001 records match; pass --yes" in r.stderr
    assert client.campaign(c.id).counts[wire.RecordState.ready] == 1001
    r = farmhand("cancel", "--campaign", "big", "--all", "--yes", env=env)
    assert r.stdout == "cancelled 1001 records\n", r.stderr
    assert client.campaign(c.id).counts[wire.RecordState.cancelled] == 1001
