"""Orphans: records this agent cannot run as specified.

When the runner a record asks for is unknown here, or its run directory cannot be staged
(an input or a parent's result cannot be written), failing the attempt would punish the
record for the agent's shortcoming. The agent reports an orphan instead: the server keeps the
record as `orphaned` with the reason and spends no attempt, and `farmhand retry --orphans`
queues it again once the cause is fixed.

The report goes through the agent's outbox like every final report, so it reaches a server
that is down right now; the agent counts it as `orphaned` once the server has taken it.
"""

from __future__ import annotations

from farmhand.agent import wire
from farmhand.agent.outbox import Outbox

__all__ = ["report_orphan"]


def report_orphan(outbox: Outbox, lease: wire.Lease, reason: str, label: str) -> None:
    """Spool the orphan report of the lease's record; `label` names it in logs."""
    body = wire.RunOrphan(token=lease.token, reason=reason[:4096])
    outbox.put(lease.run_id, "orphan", body, label)
