"""How an agent stops: how its running attempts are ended (`end_attempts`), and the signals
that ask for it. Where the stop stands is one object, `context.StopState`.

Two ways to stop: `Agent.stop()` (SIGTERM, SIGINT) terminates running commands at once and
gives their records back; `Agent.drain()` (SIGUSR1, or `--walltime-margin` before the batch
job ends) first sends each running command the checkpoint signal.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from farmhand.runtime.attempt import CHECK_EVERY, Attempt
from farmhand.runtime.resources.walltime import checkpoint_all

if TYPE_CHECKING:
    from farmhand.runtime.agent import Agent

__all__ = ["SHUTDOWN_CALL_TIMEOUT", "end_attempts", "install_signal_handlers"]

log = logging.getLogger("farmhand.agent")

#: Seconds, beyond the grace, that a shutdown waits for its runs to be released.
SHUTDOWN_SLACK = 5.0
#: Seconds a shutdown call (drain, deregister) may take against a hung server.
SHUTDOWN_CALL_TIMEOUT = 5.0


def end_attempts(
    attempts: Sequence[Attempt],
    *,
    draining: bool,
    checkpoint_signal: int,
    checkpoint_grace: float,
    term_grace: float,
    report_deadline: float,
    walltime_left: float | None,
    kill_now: Callable[[], bool],
) -> float:
    """End the running attempts: a drain first asks each to checkpoint; then each attempt's
    thread terminates its command and reports (a release), and archives or checkpoints
    being saved get until the report deadline. Returns that deadline (monotonic), which the
    outbox's last delivery also keeps to."""
    if draining:
        checkpoint_all(attempts, checkpoint_signal, checkpoint_grace, interrupted=kill_now)
    reason = "walltime" if draining else "shutdown"
    for attempt in attempts:  # each attempt's thread terminates and releases it
        attempt.request_abort(reason)
    timeout = report_deadline
    if walltime_left is not None:  # a few seconds to exit before the batch system kills us
        timeout = min(timeout, max(SHUTDOWN_CALL_TIMEOUT, walltime_left - SHUTDOWN_SLACK))
    ends = time.monotonic() + timeout
    deadline = time.monotonic() + term_grace + SHUTDOWN_SLACK
    for attempt in attempts:
        attempt.thread.join(max(0.0, deadline - time.monotonic()))
    for attempt in attempts:  # archiving outputs or saving a checkpoint: worth a wait
        while (
            attempt.thread.is_alive()
            and attempt.phase in ("reporting", "saving")
            and not kill_now()
            and time.monotonic() < ends
        ):
            attempt.thread.join(CHECK_EVERY)
    stuck = [attempt.label() for attempt in attempts if attempt.thread.is_alive()]
    if stuck:
        log.warning(
            "shutdown did not finish for %s; deregistering releases their leases",
            ", ".join(stuck),
        )
    return ends


def install_signal_handlers(agent: Agent) -> None:
    """SIGTERM and SIGINT stop the agent (a second one kills the commands at once); SIGUSR1
    starts the walltime drain. Call it from the main thread."""

    stop_state = agent.stop_state

    def handle(signum: int, frame: object) -> None:
        try:
            agent.stop(f"received {signal.Signals(signum).name}")
        finally:
            stop_state.signal_handled()

    def handle_drain(signum: int, frame: object) -> None:
        try:
            agent.drain(f"received {signal.Signals(signum).name}: walltime drain")
        finally:
            stop_state.signal_handled()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGUSR1, handle_drain)
    stop_state.watch_signals()
