"""The record state machine: one table, consulted by every code path that moves a record.

Per-record operations call `transition(event, state)`; bulk SQL statements build their
`WHERE state IN (...)` from `sources(event)`, so the table is the only place the rules live.
"""

from __future__ import annotations

from enum import Enum

from farmhand.server.errors import InvalidTransition
from farmhand.wire import RecordState, RunState

S = RecordState


class Event(str, Enum):
    """Things that happen to a record."""

    claim = "claim"  # an agent leases a ready record
    start = "start"  # the agent started the command
    complete = "complete"  # the attempt succeeded
    requeue = "requeue"  # an attempt failed or its lease was lost, attempts remain
    fail = "fail"  # an attempt failed or its lease was lost, no attempts left
    release = "release"  # the agent gave the record back (shutdown); no attempt spent
    cancel = "cancel"  # a user cancelled it
    retry = "retry"  # a user re-queued a finished-unsuccessfully record
    orphan = "orphan"  # the agent cannot run it as specified
    unblock = "unblock"  # every parent is done
    upstream_failed = "upstream_failed"  # a parent failed for good


#: Record states that hold a lease.
LEASED = frozenset({S.claimed, S.running})
#: Record states that keep a campaign open (not yet done, failed or cancelled).
UNFINISHED = frozenset({S.waiting, S.ready, S.claimed, S.running, S.orphaned})
#: Run states whose lease is live.
LIVE_RUN = frozenset({RunState.leased, RunState.running})

#: event -> (states it may start from, state it leads to)
TABLE: dict[Event, tuple[frozenset[RecordState], RecordState]] = {
    Event.claim: (frozenset({S.ready}), S.claimed),
    Event.start: (frozenset({S.claimed}), S.running),
    Event.complete: (LEASED, S.done),
    Event.requeue: (LEASED, S.ready),
    Event.fail: (LEASED, S.failed),
    Event.release: (LEASED, S.ready),
    Event.cancel: (frozenset({S.waiting, S.ready, S.claimed, S.running, S.orphaned}), S.cancelled),
    Event.retry: (frozenset({S.failed, S.cancelled, S.orphaned}), S.ready),
    Event.orphan: (LEASED, S.orphaned),
    Event.unblock: (frozenset({S.waiting}), S.ready),
    Event.upstream_failed: (frozenset({S.waiting}), S.failed),
}


def sources(event: Event) -> frozenset[RecordState]:
    """The states `event` may start from."""
    return TABLE[event][0]


def target(event: Event) -> RecordState:
    """The state `event` leads to."""
    return TABLE[event][1]


def source_values(event: Event) -> list[str]:
    """`sources(event)` as the strings stored in the database, for `IN (...)` clauses."""
    return sorted(s.value for s in sources(event))


def transition(event: Event, current: RecordState | str, *, what: str = "record") -> RecordState:
    """The state `event` moves a record in `current` to; `InvalidTransition` if not allowed."""
    current = RecordState(current)
    allowed, to = TABLE[event]
    if current not in allowed:
        raise InvalidTransition(
            f"{what} cannot go from {current.value} to {to.value} ({event.value}); "
            f"{event.value} needs a record that is {' or '.join(source_values(event))}"
        )
    return to
