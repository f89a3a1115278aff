"""`farmhand campaign archive|unarchive|delete` as a user types them against a real server."""

from __future__ import annotations

from farmhand import wire
from tests.cli.test_main import farmhand
from tests.conftest import LiveServer


def test_archive_hides_a_campaign_and_delete_removes_one(live_server: LiveServer) -> None:
    env = live_server.client_env()
    client = live_server.client()
    for name in ("old", "new"):
        c = client.create_campaign(name)
        client.submit(c.id, [wire.RecordSpec(key=f"{name}-1", command="true")])

    r = farmhand("campaign", "archive", "old", env=env)
    assert (r.returncode, r.stdout) == (0, "archived old:1\n"), r.stderr
    r = farmhand("status", env=env)
    assert r.returncode == 0 and "new:1" in r.stdout and "old:1" not in r.stdout, r.stdout
    r = farmhand("ls", "campaigns", "--archived", env=env)
    assert "old" in r.stdout and "new" in r.stdout
    r = farmhand("campaign", "unarchive", "old", env=env)
    assert r.stdout == "unarchived old:1\n"

    r = farmhand("campaign", "delete", "old", env=env)  # no terminal to ask: needs --yes
    assert r.returncode == 1 and "removes its 1 records; pass --yes" in r.stderr
    assert [c.name for c in client.campaigns()] == ["old", "new"]
    r = farmhand("campaign", "delete", "old", "--yes", env=env)
    assert (r.returncode, r.stdout) == (0, "deleted old:1: 1 records, 0 runs\n"), r.stderr
    assert [c.name for c in client.campaigns(archived=True)] == ["new"]
    r = farmhand("campaign", "delete", "old", "--yes", env=env)
    assert r.returncode == 1 and "no campaign 'old'" in r.stderr


def test_status_failures_groups_the_failed_records_by_cause(live_server: LiveServer) -> None:
    env = live_server.client_env()
    client = live_server.client()
    c = client.create_campaign("md", defaults={"max_attempts": 1})
    client.submit(c.id, [wire.RecordSpec(key=f"k{i}", command="x") for i in range(4)])
    worker = client.register(wire.AgentRegister(name="by-hand", host="test", slots=4)).agent
    for i, lease in enumerate(client.claim(worker.id, 4, campaign_id=c.id)):
        cause = "Segmentation fault" if i == 3 else f"ERROR: lost atoms at step {100 + i}"
        body = wire.RunFail(token=lease.token, error="exit code 2", stderr_tail=cause)
        client.fail(lease.run_id, body)

    r = farmhand("status", "--failures", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("failures of md:1 (4 failed):\n", 1)[1].splitlines()
    assert " ".join(lines[0].split()) == "3 exit code <n> | ERROR: lost atoms at step <n>"
    assert lines[2].strip() == "k2, k1, k0"
    assert lines[3].split()[:2] == ["1", "exit"] and "Segmentation fault" in lines[3]
