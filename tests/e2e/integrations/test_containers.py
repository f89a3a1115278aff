"""End to end: a real server, a real `farmhand agent --runners-dir`, real podman containers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import FARMHAND, farmhand, start_agent, wait_for
from tests.support.containers import containers, require_podman, run_containers, write_definitions

pytestmark = pytest.mark.e2e

RESULT = """printf '{"n": %s, "threads": "%s", "pwd": "%s"}' "$N" "$OMP_NUM_THREADS" "$(pwd)" \
> results.json; echo "n=$N in $(cat /etc/hostname 2>/dev/null || echo container)" """


@pytest.fixture
def runners_dir(tmp_path: Path) -> Path:
    """A runners.d directory with a podman runner `busybox` for the test image."""
    require_podman()
    return write_definitions(tmp_path / "runners.d", setup='"export SETUP=done"')


def submit(
    server: LiveServer, tmp_path: Path, name: str, specs: list[wire.RecordSpec]
) -> tuple[FarmhandClient, wire.Campaign]:
    """A campaign whose records run with the `busybox` runner; keeps the user's own
    ~/.config/farmhand/runners.d out of the agents this server's tests start."""
    server.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    client = server.client()
    campaign = client.create_campaign(name, defaults={"runner": "busybox"})
    assert client.submit(campaign.id, specs).created == len(specs)
    return client, campaign


def test_records_run_inside_the_container_to_done(
    live_server: LiveServer, tmp_path: Path, runners_dir: Path
) -> None:
    specs = [
        wire.RecordSpec(key=f"r{n}", command=RESULT, run_args={"env": {"N": n}, "cores": 1})
        for n in range(3)
    ]
    specs.append(wire.RecordSpec(key="setup", command='test "$SETUP" = done'))
    specs.append(wire.RecordSpec(key="fails", command="exit 3", run_args={"retry_delay": 0}))
    client, campaign = submit(live_server, tmp_path, "boxed", specs)
    agent = start_agent(
        live_server, tmp_path, "boxed", "--runners-dir", str(runners_dir),
        "--slots", "2", "--cores", "2", "--exit-when-idle", "3",
    )  # fmt: skip
    assert agent.wait(timeout=300) == 0
    records = {r.key: client.record(r.id) for r in client.records(campaign_id=campaign.id)}
    assert {k: r.state for k, r in records.items()} == {
        "r0": "done", "r1": "done", "r2": "done", "setup": "done", "fails": "failed",
    }  # fmt: skip
    for n in range(3):
        record = records[f"r{n}"]
        assert record.runs is not None
        (run,) = record.runs
        run_dir = tmp_path / "work-boxed" / "runs" / str(campaign.id) / f"r{n}" / str(run.id)
        # results.json was written inside the container, into the bind-mounted run dir.
        assert record.result == {"n": n, "threads": "1", "pwd": str(run_dir.resolve())}
        # The run directory left the node with its archive, results.json inside.
        assert not run_dir.exists() and run.archive is not None
        archive = tmp_path / f"r{n}.tar.gz"
        client.download_snapshot(run.archive, archive)
        with tarfile.open(archive) as tar:
            results = tar.extractfile("results.json")
            assert results is not None and json.loads(results.read()) == record.result
        assert run.stdout_tail is not None and run.stdout_tail.startswith(f"n={n} in ")
    assert records["fails"].error == "exit code 3"
    assert run_containers() == []
    log = (tmp_path / "agent-boxed.log").read_text()
    assert "runners: busybox, subprocess" in log


def test_cancelling_a_containerised_record_leaves_no_container(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, runners_dir: Path
) -> None:
    server = live_server_factory(lease_ttl=3)  # heartbeats every second
    long = wire.RecordSpec(key="long", command="echo up > up.txt; sleep 1000")
    client, campaign = submit(server, tmp_path, "cancel", [long])
    agent = start_agent(server, tmp_path, "c", "--runners-dir", str(runners_dir))
    try:
        up = wait_for(
            lambda: next((tmp_path / "work-c" / "runs").glob("*/long/*/up.txt"), None),
            timeout=120,
            what="the container to start",
        )
        run_id = int(up.parent.name)
        prefix = f"farmhand-{run_id}-"
        assert len(containers(prefix)) == 1
        (record,) = client.records(campaign_id=campaign.id)
        client.cancel([record.id])
        wait_for(lambda: containers(prefix) == [], timeout=60, what="the container to go")
        wait_for(lambda: not up.parent.exists(), timeout=60, what="the run dir to be removed")
        assert client.record(record.id).state == "cancelled"
        assert agent.poll() is None  # the agent goes on working
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    assert run_containers() == []


def test_agent_stop_stops_its_containers(
    live_server: LiveServer, tmp_path: Path, runners_dir: Path
) -> None:
    specs = [wire.RecordSpec(key=f"s{i}", command="echo up > up.txt; sleep 1000") for i in range(2)]
    client, campaign = submit(live_server, tmp_path, "stop", specs)
    agent = start_agent(
        live_server, tmp_path, "s", "--runners-dir", str(runners_dir), "--slots", "2"
    )
    ups = lambda: list((tmp_path / "work-s" / "runs").glob("*/*/*/up.txt"))  # noqa: E731
    wait_for(lambda: len(ups()) == 2, timeout=120, what="both containers to start")
    # This test's containers: named after its runs (other suites may run containers too).
    ours = [f"farmhand-{up.parent.name}-" for up in ups()]
    assert sorted(len(containers(prefix)) for prefix in ours) == [1, 1]
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=120) == 0
    assert [name for prefix in ours for name in containers(prefix)] == []
    states = {r.key: (r.state, r.attempts) for r in client.records(campaign_id=campaign.id)}
    assert states == {"s0": ("ready", 0), "s1": ("ready", 0)}  # released, not failed


def test_list_runners_shows_the_podman_runner(tmp_path: Path, runners_dir: Path) -> None:
    shown = subprocess.run(
        [*FARMHAND, "agent", "--list-runners", "--runners-dir", str(runners_dir)],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:3]}
    assert rows["busybox"][1:5] == ["container", "podman", "farmhand-busybox", "offered"]


def test_a_runner_whose_image_does_not_exist_is_dropped_and_named(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """The engine's own failure is not the calculation's: the records stay ready with their
    attempts unspent, the agent stops offering the runner, and `farmhand status` says so."""
    require_podman()
    runners = write_definitions(
        tmp_path / "runners.d", name="noimage", image="farmhand-no-such-image"
    )
    server = live_server_factory(lease_ttl=3)  # heartbeats every second
    specs = [wire.RecordSpec(key=f"n{i}", command="echo never") for i in range(2)]
    client = server.client()
    server.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    campaign = client.create_campaign("noimage", defaults={"runner": "noimage"})
    assert client.submit(campaign.id, specs).created == 2
    agent = start_agent(server, tmp_path, "n", "--runners-dir", str(runners), "--slots", "2")
    try:
        # A start already under way in the other slot when the runner was dropped fails
        # and releases its record a moment later: wait until both records are back.
        said = wait_for(
            lambda: _status_naming(
                server, "2 ready records need runner 'noimage', offered by no live agent"
            ),
            timeout=120,
            what="farmhand status to name the runner",
        )
        (me,) = [a for a in client.agents() if a.name == "n"]
        assert agent.poll() is None  # it goes on, offering what it still can
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    assert me.status is not None and set(me.status.broken_runners) == {"noimage"}
    why = me.status.broken_runners["noimage"]
    assert why.startswith("3 starts in a row failed; the last: podman exited 125")
    assert "image not known" in why
    assert (
        f"2 ready records need runner 'noimage', offered by no live agent (agent n stopped "
        f"offering it: {why})"
    ) in said
    records = client.records(campaign_id=campaign.id)
    assert {(r.state, r.attempts) for r in records} == {("ready", 0)}  # no attempt spent
    log = (tmp_path / "agent-n.log").read_text()
    assert f"this agent stops offering runner 'noimage': {why}" in log
    assert run_containers() == []


def _status_naming(server: LiveServer, words: str) -> str:
    """`farmhand status`'s output when it holds `words`, else ""."""
    out = farmhand(server, "status").stdout
    return out if words in out else ""
