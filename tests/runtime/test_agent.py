"""The agent loop, in-process, against a real server process."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.agent import Agent, AgentConfig, install_signal_handlers

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe

#: A command that records its shell's pid and a grandchild's, then waits forever.
LONG = "echo $$ > {dir}/leader.pid; sleep 1000 & echo $! > {dir}/child.pid; wait"


def make_agent(server: LiveServer, workdir: Path, **config: Any) -> Agent:
    settings: dict[str, Any] = {"slots": 2, "exit_when_idle": 1.0, **config}
    return Agent(
        AgentConfig(server=server.url, token=server.admin_token, workdir=workdir, **settings)
    )


class Running:
    """An agent's run() on a background thread."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.status: list[int] = []
        self.thread = threading.Thread(target=lambda: self.status.append(agent.run()), daemon=True)
        self.thread.start()

    def finish(self, timeout: float) -> int:
        """Wait for run() to return; fail the test if it does not within `timeout`."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.agent.stop("test cleanup")
            self.agent.stop("test cleanup")
            pytest.fail(f"agent.run() did not return within {timeout}s")
        assert len(self.status) == 1
        return self.status[0]


def submit(
    client: FarmhandClient, *specs: wire.RecordSpec, name: str = "c", **defaults: Any
) -> int:
    campaign = client.create_campaign(name, defaults=defaults or None)
    assert client.submit(campaign.id, list(specs)).created == len(specs)
    return campaign.id


def by_key(client: FarmhandClient, campaign_id: int) -> dict[str, wire.Record]:
    return {r.key: client.record(r.id) for r in client.records(campaign_id=campaign_id)}


def test_agent_runs_records_to_done_and_failed(live_server: LiveServer, tmp_path: Path) -> None:
    from tests.runtime.files.test_snapshots_loop import read_archive

    client = live_server.client()
    spec = wire.RecordSpec
    campaign_id = submit(
        client,
        spec(key="object", command="""printf '{"energy": -1.5}' > results.json; echo hello"""),
        spec(key="array", command="echo '[1, 2]' > results.json"),
        spec(key="no results", command="true"),
        spec(key="exit/3", command="echo oops >&2; exit 3"),
        spec(key="bad json", command="echo '{x' > results.json"),
        spec(key="scalar", command="echo 3 > results.json"),
        spec(key="signal", command="kill -KILL $$"),
        spec(key="podman", command="true", run_args={"runner": "podman"}),
        retry_delay=0,  # failures are retried at once: the agent exits when idle for 1 s
    )
    agent = make_agent(live_server, tmp_path / "work")
    assert agent.run() == 0

    records = by_key(client, campaign_id)
    assert {k: r.state for k, r in records.items()} == {
        "object": "done",
        "array": "done",
        "no results": "done",
        "exit/3": "failed",
        "bad json": "failed",
        "scalar": "failed",
        "signal": "failed",
        "podman": "ready",  # never handed to this agent: it offers no runner 'podman'
    }
    assert records["object"].result == {"energy": -1.5}
    assert records["array"].result == [1, 2]
    assert records["no results"].result is None
    assert records["exit/3"].error == "exit code 3"
    assert records["bad json"].error.startswith("results.json is not valid JSON: ")
    assert records["scalar"].error == "results.json must hold a JSON object or array"
    assert records["signal"].error == "killed by signal SIGKILL"
    podman = records["podman"]
    assert podman.attempts == 0 and podman.runs == []  # claims only hand it runnable records
    assert agent.counts["refused"] == 0

    (done,) = records["object"].runs
    assert (done.state, done.exit_code, done.stdout_tail) == ("done", 0, "hello\n")
    failed = records["exit/3"].runs
    assert len(failed) == records["exit/3"].max_attempts  # every attempt was spent
    assert {(r.state, r.exit_code, r.error, r.stderr_tail) for r in failed} == {
        ("failed", 3, "exit code 3", "oops\n")
    }
    assert {r.exit_code for r in records["signal"].runs} == {-signal.SIGKILL}
    # A finished run's directory goes to the server as its archive, then leaves the node.
    files = read_archive(client, done.archive, tmp_path / "object.tar.gz")
    assert files["results.json"] == b'{"energy": -1.5}' and files["stdout.txt"] == b"hello\n"
    assert not (tmp_path / "work" / "runs" / str(campaign_id) / "object" / str(done.id)).exists()
    assert agent.counts["done"] == 3
    assert agent.counts["failed"] == 4 * records["exit/3"].max_attempts


def test_command_environment(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caught mutant (ids differ between tables in test databases): FARMHAND_RUN_ID set from
    the record id and FARMHAND_RECORD_ID from the campaign id (agent/runtime/context.py)."""
    monkeypatch.setenv("FROM_AGENT", "inherited")
    monkeypatch.setenv("FARMHAND_TOKEN", "the-agent's-secret")
    client = live_server.client()
    command = """cat > results.json <<EOF
{"run": "$FARMHAND_RUN_ID", "record": "$FARMHAND_RECORD_ID", "key": "$FARMHAND_RECORD_KEY",
 "campaign": "$FARMHAND_CAMPAIGN_ID", "attempt": "$FARMHAND_ATTEMPT",
 "agent": "$FARMHAND_AGENT_NAME", "dir": "$FARMHAND_RUN_DIR", "pwd": "$(pwd -P)",
 "greeting": "$GREETING", "count": "$COUNT", "inherited": "$FROM_AGENT",
 "token": "${FARMHAND_TOKEN-unset}"}
EOF"""
    campaign_id = submit(
        client,
        wire.RecordSpec(
            key="env", command=command, run_args={"env": {"GREETING": "hi", "COUNT": 3}}
        ),
    )
    assert make_agent(live_server, tmp_path / "work", name="test-agent").run() == 0
    record = by_key(client, campaign_id)["env"]
    assert record.state == "done", record.error
    assert record.runs is not None
    result = record.result
    assert isinstance(result, dict)
    assert result == {
        "run": str(record.runs[0].id),
        "record": str(record.id),
        "key": "env",
        "campaign": str(campaign_id),
        "attempt": "1",
        "agent": "test-agent",
        "dir": result["pwd"],
        "pwd": result["pwd"],
        "greeting": "hi",
        "count": "3",
        "inherited": "inherited",
        "token": "unset",
    }
    assert (
        Path(result["dir"])
        == (
            tmp_path / "work" / "runs" / str(campaign_id) / "env" / str(record.runs[0].id)
        ).resolve()
    )


def test_params_reach_the_run_as_a_file_and_variables(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    command = """printf '{"T": "%s", "a": "%s", "ok": "%s", "phase": "%s", "file": %s}' \
"$FARMHAND_PARAM_T" "$FARMHAND_PARAM_a" "$FARMHAND_PARAM_ok" "$FARMHAND_PARAM_phase" \
"$(cat params.json)" > results.json"""
    params = {"T": 600, "a": 4.05, "ok": True, "phase": "f c c"}
    campaign_id = submit(
        client,
        wire.RecordSpec(key="p", command=command, params=params),
        wire.RecordSpec(key="bare", command="ls > results.txt; echo '{}' > results.json"),
    )
    assert make_agent(live_server, tmp_path / "work").run() == 0
    records = by_key(client, campaign_id)
    assert records["p"].state == "done", records["p"].error
    assert records["p"].result == {
        "T": "600", "a": "4.05", "ok": "true", "phase": "f c c", "file": params,
    }  # fmt: skip
    # A record without params gets no params.json.
    assert records["bare"].runs is not None and records["bare"].runs[0].archive is not None
    from tests.runtime.files.test_snapshots_loop import read_archive

    files = read_archive(client, records["bare"].runs[0].archive, tmp_path / "bare.tar.gz")
    assert "params.json" not in files and "params.json" not in files["results.txt"].decode()


def test_stop_releases_a_running_record(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    campaign_id = submit(client, wire.RecordSpec(key="long", command=LONG.format(dir=tmp_path)))
    agent = make_agent(live_server, tmp_path / "work", exit_when_idle=None, term_grace=3)
    running = Running(agent)
    leader = probe.read_pid(tmp_path / "leader.pid")
    child = probe.read_pid(tmp_path / "child.pid")
    (run_dir,) = (tmp_path / "work" / "runs" / str(campaign_id) / "long").iterdir()
    assert not probe.is_dead(child)

    agent.stop("test")
    assert running.finish(timeout=15) == 0

    record = by_key(client, campaign_id)["long"]
    assert (record.state, record.attempts) == ("ready", 0)
    assert record.runs is not None
    # Exactly one run: the agent drained before releasing, so its own release could not wake
    # its in-flight long poll into leasing the record again.
    assert [(r.state, r.error) for r in record.runs] == [("released", "agent shutting down")]
    assert probe.is_dead(leader) and probe.is_dead(child)
    assert not run_dir.exists()
    (me,) = [a for a in client.agents() if a.id == agent.agent_id]
    assert me.state == "stopped"
    assert agent.counts["released"] == 1


def test_second_stop_kills_at_once(live_server: LiveServer, tmp_path: Path, probe: Probe) -> None:
    client = live_server.client()
    stubborn = "trap '' TERM; " + LONG.format(dir=tmp_path)  # ignores SIGTERM, children too
    campaign_id = submit(client, wire.RecordSpec(key="stubborn", command=stubborn))
    agent = make_agent(live_server, tmp_path / "work", exit_when_idle=None, term_grace=120)
    running = Running(agent)
    child = probe.read_pid(tmp_path / "child.pid")

    agent.stop("first")
    probe.wait_until(lambda: agent.stopping, what="the shutdown to begin")
    agent.stop("second")
    assert running.finish(timeout=20) == 0  # long before the 120 s grace

    assert probe.is_dead(child)
    record = by_key(client, campaign_id)["stubborn"]
    assert (record.state, record.attempts) == ("ready", 0)


def test_cancel_stops_the_command_without_reporting(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, probe: Probe
) -> None:
    server = live_server_factory(lease_ttl=1.5)  # heartbeats every 0.5 s
    client = server.client()
    campaign_id = submit(client, wire.RecordSpec(key="doomed", command=LONG.format(dir=tmp_path)))
    agent = make_agent(server, tmp_path / "work", exit_when_idle=None)
    running = Running(agent)
    child = probe.read_pid(tmp_path / "child.pid")
    (run_dir,) = (tmp_path / "work" / "runs" / str(campaign_id) / "doomed").iterdir()
    record_id = by_key(client, campaign_id)["doomed"].id

    client.cancel([record_id])
    probe.wait_until(
        lambda: probe.is_dead(child) and not run_dir.exists(),
        what="the cancelled command to be stopped and cleaned up",
    )
    probe.wait_until(
        lambda: agent.counts["cancelled"] == 1 and agent.running == 0,
        what="the agent to drop the run",
    )
    assert running.thread.is_alive()  # the agent goes on working
    agent.stop("test")
    assert running.finish(timeout=15) == 0

    record = client.record(record_id)
    assert record.state == "cancelled"
    assert record.runs is not None
    assert [run.state for run in record.runs] == ["cancelled"]  # nothing was reported
    assert agent.counts["done"] == agent.counts["failed"] == 0


def test_exit_when_idle_with_nothing_to_do(live_server: LiveServer, tmp_path: Path) -> None:
    client = live_server.client()
    agent = make_agent(live_server, tmp_path / "work", exit_when_idle=0.3, poll_wait=30)
    assert Running(agent).finish(timeout=15) == 0
    (me,) = [a for a in client.agents() if a.id == agent.agent_id]
    assert me.state == "stopped"


def test_deregistered_from_outside_the_agent_stops(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    agent = make_agent(live_server, tmp_path / "work", exit_when_idle=None, poll_wait=1)
    running = Running(agent)
    probe.wait_until(lambda: agent.agent_id is not None, what="registration")
    assert agent.agent_id is not None
    client.deregister(agent.agent_id)  # its next claim gets 409
    assert running.finish(timeout=15) == 0


def test_campaign_filter(live_server: LiveServer, tmp_path: Path) -> None:
    client = live_server.client()
    other = submit(client, wire.RecordSpec(key="a", command="true"), name="other")
    mine = submit(client, wire.RecordSpec(key="a", command="true"), name="mine")
    assert make_agent(live_server, tmp_path / "work", campaign_id=mine).run() == 0
    assert by_key(client, mine)["a"].state == "done"
    assert by_key(client, other)["a"].state == "ready"


def test_sigterm_stops_the_agent(live_server: LiveServer, tmp_path: Path, probe: Probe) -> None:
    assert threading.current_thread() is threading.main_thread()
    agent = make_agent(live_server, tmp_path / "work", exit_when_idle=None)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers(agent)
    try:
        running = Running(agent)
        probe.wait_until(lambda: agent.agent_id is not None, what="registration")
        os.kill(os.getpid(), signal.SIGTERM)
        assert running.finish(timeout=15) == 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    (me,) = [a for a in live_server.client().agents() if a.id == agent.agent_id]
    assert me.state == "stopped"


def test_stop_before_run_makes_run_return_without_registering(tmp_path: Path) -> None:
    agent = Agent(AgentConfig(server="http://127.0.0.1:9", workdir=tmp_path))
    agent.stop("never mind")
    assert agent.run() == 0  # it did not even try to reach the (absent) server
    assert agent.agent_id is None


def test_report_waits_for_a_restarted_server(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    gate = tmp_path / "go"
    command = (
        f"echo $$ > {tmp_path}/leader.pid; while [ ! -f {gate} ]; do sleep 0.05; done; "
        """echo '{"survived": true}' > results.json"""
    )
    campaign_id = submit(live_server.client(), wire.RecordSpec(key="patient", command=command))
    agent = make_agent(live_server, tmp_path / "work")
    running = Running(agent)
    leader = probe.read_pid(tmp_path / "leader.pid")

    live_server.stop()  # the command finishes while the server is down...
    gate.touch()
    probe.wait_until(lambda: probe.is_dead(leader), what="the command to finish")
    live_server.start()  # ...and its report gets through once the server is back
    assert running.finish(timeout=60) == 0

    record = by_key(live_server.client(), campaign_id)["patient"]
    assert (record.state, record.result) == ("done", {"survived": True})
    assert agent.counts["done"] == 1


class GatedClient(FarmhandClient):
    """The real client, except that a claim that got leases waits at a gate before returning,
    like a long poll answered just as the agent began to stop."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.arrived = threading.Event()
        self.gate = threading.Event()

    def claim(self, *args: Any, **kwargs: Any) -> list[wire.Lease]:
        leases = super().claim(*args, **kwargs)
        if leases:
            self.arrived.set()
            self.gate.wait(30)
        return leases


def test_leases_arriving_after_stop_are_released_not_run(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    marker = tmp_path / "ran"
    campaign_id = submit(
        live_server.client(), wire.RecordSpec(key="late", command=f"touch {marker}")
    )
    with GatedClient(live_server.url, live_server.admin_token) as gated:
        agent = Agent(AgentConfig(server=live_server.url, workdir=tmp_path / "work"), client=gated)
        running = Running(agent)
        assert gated.arrived.wait(15)
        agent.stop("test")
        probe.wait_until(lambda: agent.stopping, what="the shutdown to begin")
        gated.gate.set()
        assert running.finish(timeout=15) == 0

    assert not marker.exists()
    assert not (tmp_path / "work" / "runs").exists()
    record = by_key(live_server.client(), campaign_id)["late"]
    assert (record.state, record.attempts) == ("ready", 0)
    assert record.runs is not None
    assert [run.state for run in record.runs] == ["released"]
