"""The walltime drain, in-process against a real server: checkpoint signal, grace, release."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farmhand import wire
from farmhand.client import FarmhandClient
from farmhand.runtime.agent import Agent, AgentConfig, install_signal_handlers
from tests.runtime.test_agent import Running, by_key, make_agent, submit

if TYPE_CHECKING:
    from tests.conftest import LiveServer
    from tests.support.agent_side import Probe

#: Counts steps; on USR1 writes the step it reached (its checkpoint) and exits 0, like a code
#: that saves its state and stops cleanly when asked.
CHECKPOINTING = (
    "echo $$ > {dir}/leader.pid; step=0; "
    "trap 'echo $step > {dir}/checkpoint; exit 0' USR1; "
    "while true; do sleep 0.1; step=$((step + 1)); done"
)
#: Notes the checkpoint signal but goes on running (and ignores SIGTERM too, if asked).
STUBBORN = (
    "echo $$ > {dir}/leader.pid; trap 'echo noted > {dir}/checkpoint' USR1; {ignore_term}"
    "sleep 1000 & echo $! > {dir}/child.pid; while true; do wait; done"
)
WALLTIME_REASON = "the agent's batch job is ending (walltime drain)"


def test_walltime_drain_checkpoints_then_gives_the_record_back(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    command = CHECKPOINTING.format(dir=tmp_path)
    campaign_id = submit(client, wire.RecordSpec(key="long", command=command))
    agent = make_agent(
        live_server,
        tmp_path / "work",
        exit_when_idle=None,
        walltime=6.0,
        walltime_margin=3.0,  # the drain is due 3 s after the start
        checkpoint_signal=signal.SIGUSR1,
        checkpoint_grace=30,
    )
    running = Running(agent)
    probe.read_pid(tmp_path / "leader.pid")
    assert running.finish(timeout=30) == 0  # it stopped by itself, at the drain

    assert int((tmp_path / "checkpoint").read_text()) > 0  # the command saved its state
    record = by_key(client, campaign_id)["long"]
    assert (record.state, record.attempts) == ("ready", 0)  # no attempt spent
    assert record.runs is not None
    assert [(r.state, r.error) for r in record.runs] == [("released", WALLTIME_REASON)]
    # It exited 0 on the signal, yet it is not done: it was asked to stop, not finished.
    assert agent.counts == {
        "done": 0,
        "failed": 0,
        "released": 1,
        "cancelled": 0,
        "lost": 0,
        "orphaned": 0,
        "refused": 0,
    }
    run_dir = tmp_path / "work" / "runs" / str(campaign_id) / "long" / str(record.runs[0].id)
    assert run_dir.is_dir()  # kept: it may hold the checkpoint
    (me,) = [a for a in client.agents() if a.id == agent.agent_id]
    assert me.state == "stopped"


def test_sigusr1_drains_and_terminates_what_does_not_stop(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    assert threading.current_thread() is threading.main_thread()
    client = live_server.client()
    campaign_id, agent = stubborn_agent(live_server, tmp_path, "", grace=1.0)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    install_signal_handlers(agent)
    try:
        running = Running(agent)
        child = probe.read_pid(tmp_path / "child.pid")
        os.kill(os.getpid(), signal.SIGUSR1)
        assert running.finish(timeout=30) == 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert agent.draining
    assert (tmp_path / "checkpoint").read_text() == "noted\n"  # it got the signal...
    assert probe.is_dead(child)  # ...and was terminated after the grace
    record = by_key(client, campaign_id)["stubborn"]
    assert (record.state, record.attempts) == ("ready", 0)
    assert record.runs is not None and [r.error for r in record.runs] == [WALLTIME_REASON]


def test_a_stop_during_the_drain_kills_at_once(
    live_server: LiveServer, tmp_path: Path, probe: Probe
) -> None:
    client = live_server.client()
    campaign_id, agent = stubborn_agent(live_server, tmp_path, "trap '' TERM; ", grace=300)
    running = Running(agent)
    child = probe.read_pid(tmp_path / "child.pid")
    agent.drain("test")
    probe.wait_until(lambda: (tmp_path / "checkpoint").exists(), what="the checkpoint signal")
    agent.stop("impatient")  # a second SIGINT: no more grace
    assert running.finish(timeout=30) == 0  # long before either 300 s grace
    assert probe.is_dead(child)
    record = by_key(client, campaign_id)["stubborn"]
    assert (record.state, record.attempts) == ("ready", 0)


def stubborn_agent(
    server: LiveServer, tmp_path: Path, ignore_term: str, grace: float
) -> tuple[int, Agent]:
    """A STUBBORN record and an agent (not started) whose drain sends USR1 and waits `grace`
    seconds, as does its termination."""
    command = STUBBORN.format(dir=tmp_path, ignore_term=ignore_term)
    campaign_id = submit(server.client(), wire.RecordSpec(key="stubborn", command=command))
    agent = make_agent(
        server,
        tmp_path / "work",
        exit_when_idle=None,
        checkpoint_signal=signal.SIGUSR1,
        checkpoint_grace=grace,
        term_grace=grace,
    )
    return campaign_id, agent


class RecordingClient(FarmhandClient):
    """The real client; it also notes what each claim asked for."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.claims: list[dict[str, Any]] = []

    def claim(self, *args: Any, **kwargs: Any) -> list[wire.Lease]:
        self.claims.append(kwargs)
        return super().claim(*args, **kwargs)


def test_a_record_longer_than_the_time_left_is_never_handed_over(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign_id = submit(
        client,
        wire.RecordSpec(key="hour", command="true", run_args={"walltime": 3600}, priority=9),
        wire.RecordSpec(key="short", command="true", run_args={"walltime": "02:00"}),
        wire.RecordSpec(key="unknown", command="true"),
    )
    # One slot, and the long record heads the queue: the server's claim filters it out.
    with RecordingClient(live_server.url, live_server.admin_token) as recording:
        config = AgentConfig(
            server=live_server.url,
            workdir=tmp_path / "work",
            walltime=600,
            walltime_margin=60,
            exit_when_idle=1.5,
            slots=1,
        )
        agent = Agent(config, client=recording)
        assert agent.run() == 0

    records = by_key(client, campaign_id)
    assert records["short"].state == records["unknown"].state == "done"
    hour = records["hour"]
    assert (hour.state, hour.attempts) == ("ready", 0) and not hour.runs  # never handed over
    assert agent.counts["released"] == agent.counts["refused"] == 0
    # Every claim told the server the time this agent has, for its filter.
    lefts = [c["walltime_left"] for c in recording.claims]
    assert lefts and all(500 < left <= 540 for left in lefts)
