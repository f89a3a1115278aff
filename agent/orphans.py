"""Orphans: records this agent cannot run as specified.

When the runner a record asks for is unknown here, or its run directory cannot be staged
(an input or a parent's result cannot be written), failing the attempt would punish the
record for the agent's shortcoming. The agent reports an orphan instead: the server keeps the
record as `orphaned` with the reason and spends no attempt, and `farmhand retry --orphans`
queues it again once the cause is fixed.
"""

from __future__ import annotations

import logging
import threading

from farmhand.agent import wire
from farmhand.agent.client import ApiError, FarmhandClient, ServerUnavailable
from farmhand.agent.retry import retry_unavailable

__all__ = ["report_orphan"]

log = logging.getLogger("farmhand.agent")


def report_orphan(
    client: FarmhandClient,
    lease: wire.Lease,
    reason: str,
    *,
    deadline: float,
    interrupted: threading.Event | None = None,
) -> bool:
    """Report the lease's record as orphaned, retrying for up to `deadline` seconds (until
    `interrupted`) while the server is unreachable; False if the report did not land (the
    lease then expires and the record is claimed again)."""
    what = f"orphan {lease.key} (run {lease.run_id})"
    try:
        retry_unavailable(
            lambda: client.orphan(lease.run_id, lease.token, reason),
            what=what,
            deadline=deadline,
            interrupted=interrupted,
        )
    except (ServerUnavailable, ApiError) as exc:
        log.warning("could not %s: %s", what, exc)
        return False
    return True
