"""The agent loop with resources: disjoint GPUs per run, waiting for a share, giving back
what could never fit; what it tells the server at registration and with every claim."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.agent import Agent, AgentConfig
from farmhand.runtime.resources.node import NodeResources
from farmhand.runtime.runners.definitions import load
from tests.runtime.files.test_snapshots_loop import read_archive
from tests.runtime.test_agent import Running, by_key, submit

if TYPE_CHECKING:
    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe


class RecordingClient(FarmhandClient):
    """The real client, remembering what the agent sent at registration and in each claim."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.registered: wire.AgentRegister | None = None
        self.claims: list[dict[str, Any]] = []

    def register(self, body: wire.AgentRegister) -> wire.AgentRegistered:
        self.registered = body
        return super().register(body)

    def claim(self, *args: Any, **kwargs: Any) -> list[wire.Lease]:
        self.claims.append(kwargs)
        return super().claim(*args, **kwargs)


def test_gpu_records_get_disjoint_devices_and_wait_for_them(
    live_server: LiveServer, tmp_path: Path, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="farmhand")  # the agent's log, if it fails
    gate = tmp_path / "gate"
    seen = tmp_path / "seen"
    seen.mkdir()
    command = (
        'echo "$CUDA_VISIBLE_DEVICES $OMP_NUM_THREADS $FARMHAND_GPUS" '
        f"> {seen}/$FARMHAND_RECORD_KEY; "
        f"while [ ! -f {gate} ]; do sleep 0.05; done; "
        """printf '{"gpus": "%s"}' "$CUDA_VISIBLE_DEVICES" > results.json"""
    )
    spec = wire.RecordSpec
    campaign_id = submit(
        live_server.client(),
        *(spec(key=f"g{i}", command=command, run_args={"gpus": 2, "cores": 2}) for i in range(3)),
        spec(key="cpu", command=command),
        spec(key="huge", command=command, run_args={"gpus": 8}),
    )
    node = NodeResources(cores=8, gpus=("0", "1", "2", "3"), memory_mb=4096)
    with RecordingClient(live_server.url, live_server.admin_token) as client:
        agent = Agent(
            AgentConfig(
                server=live_server.url, workdir=tmp_path / "work", slots=5, resources=node,
                exit_when_idle=1.0, poll_wait=1.0,
            ),
            client=client,
        )  # fmt: skip
        running = Running(agent)
        # Two 2-GPU records run at once; the third waits for GPUs; "cpu" needs none and
        # runs beside them; "huge" could never fit, so claims never hand it over. Which two
        # GPU records go first depends on which finishes staging first (threads).
        try:
            probe.wait_until(lambda: len(list(seen.iterdir())) >= 3, what="three to start")
        except pytest.fail.Exception:  # say where each attempt stands (a CI-only flake)
            phases = {a.lease.key: a.phase for a in list(agent._attempts.values())}
            raise AssertionError(
                f"started: {sorted(p.name for p in seen.iterdir())}; attempts: {phases}; "
                f"waiting for a share: {agent.allocator.waiting}; free: {agent.allocator.free()}; "
                f"claims: {client.claims}; counts: {dict(agent.counts)}"
            ) from None
        first = {p.name: p.read_text().split() for p in seen.iterdir()}
        gpu_runs = sorted(set(first) - {"cpu"})
        assert len(first) == 3 and "cpu" in first and len(gpu_runs) == 2, first
        assert first["cpu"] == ["1", "0"]  # CUDA_VISIBLE_DEVICES="": no GPU for it
        assert [first[k][1:] for k in gpu_runs] == [["2", "2"], ["2", "2"]]
        assert {first[k][0] for k in gpu_runs} == {"0,1", "2,3"}
        (waiter,) = {"g0", "g1", "g2"} - set(gpu_runs)
        records = by_key(live_server.client(), campaign_id)
        assert records[waiter].state == "claimed"  # leased, waiting for its share
        assert agent.allocator.waiting == 1
        # While g0 and g1 hold all four GPUs, claims offer none.
        probe.wait_until(
            lambda: any(c["free"].gpus == 0 for c in client.claims), what="a claim offering none"
        )
        gate.touch()
        assert running.finish(timeout=60) == 0

    records = by_key(live_server.client(), campaign_id)
    assert {k: r.state for k, r in records.items()} == {
        "g0": "done", "g1": "done", "g2": "done", "cpu": "done", "huge": "ready",
    }  # fmt: skip
    assert records[waiter].result in ({"gpus": "0,1"}, {"gpus": "2,3"})
    assert records["huge"].runs == [] and records["huge"].attempts == 0
    assert agent.counts["refused"] == 0
    registered = client.registered
    assert registered is not None
    assert registered.runners == ["subprocess"]
    assert registered.resources == wire.Resources(cores=8, gpus=4, memory_mb=4096)
    assert client.claims[0]["runners"] == ["subprocess"]
    assert client.claims[0]["free"] == wire.Resources(cores=8, gpus=4, memory_mb=4096)


def test_a_runner_only_some_agents_have(live_server: LiveServer, tmp_path: Path) -> None:
    """Until the server filters claims by runner, an agent gives back what it cannot run and
    the agent that has the runner finishes it."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "native.toml").write_text(
        '[runners.special]\nkind = "subprocess"\nsetup = "export SPECIAL=yes"\n'
    )
    client = live_server.client()
    campaign_id = submit(
        client,
        wire.RecordSpec(key="s", command="echo $SPECIAL > out", run_args={"runner": "special"}),
    )
    plain = Agent(
        AgentConfig(server=live_server.url, token=live_server.admin_token,
                    workdir=tmp_path / "plain", exit_when_idle=1.0, name="plain")
    )  # fmt: skip
    assert plain.run() == 0
    record = by_key(client, campaign_id)["s"]
    assert (record.state, record.attempts) == ("ready", 0)
    special = Agent(
        AgentConfig(server=live_server.url, token=live_server.admin_token,
                    workdir=tmp_path / "special", exit_when_idle=1.0, name="special",
                    runners=load([tmp_path / "d"], user_dir=tmp_path / "none"))
    )  # fmt: skip
    assert special.run() == 0
    record = by_key(client, campaign_id)["s"]
    assert record.state == "done"
    assert record.runs and record.runs[-1].agent_id == special.agent_id
    files = read_archive(client, record.runs[-1].archive, tmp_path / "s.tar.gz")
    assert files["out"] == b"yes\n"
    assert plain.counts["refused"] == 0 and plain.counts["done"] == 0  # never handed to it
    assert {run.agent_id for run in record.runs} == {special.agent_id}
