"""The record state table: every event against every state."""

from __future__ import annotations

import pytest

from farmhand.server.errors import InvalidTransition
from farmhand.server.queue import states
from farmhand.server.queue.states import Event as E
from farmhand.wire import RecordState as S

# Written out by hand from DESIGN.md, independently of the table under test.
EXPECTED: dict[tuple[E, S], S] = {
    (E.claim, S.ready): S.claimed,
    (E.start, S.claimed): S.running,
    (E.complete, S.claimed): S.done,
    (E.complete, S.running): S.done,
    (E.requeue, S.claimed): S.ready,
    (E.requeue, S.running): S.ready,
    (E.fail, S.claimed): S.failed,
    (E.fail, S.running): S.failed,
    (E.release, S.claimed): S.ready,
    (E.release, S.running): S.ready,
    (E.cancel, S.waiting): S.cancelled,
    (E.cancel, S.ready): S.cancelled,
    (E.cancel, S.claimed): S.cancelled,
    (E.cancel, S.running): S.cancelled,
    (E.cancel, S.orphaned): S.cancelled,
    (E.retry, S.failed): S.ready,
    (E.retry, S.cancelled): S.ready,
    (E.retry, S.orphaned): S.ready,
    (E.orphan, S.claimed): S.orphaned,
    (E.orphan, S.running): S.orphaned,
    (E.unblock, S.waiting): S.ready,
    (E.upstream_failed, S.waiting): S.failed,
}


@pytest.mark.parametrize("event", list(E))
@pytest.mark.parametrize("state", list(S))
def test_every_event_in_every_state(event: E, state: S) -> None:
    expected = EXPECTED.get((event, state))
    if expected is not None:
        assert states.transition(event, state) is expected
        assert state in states.sources(event)
        assert state.value in states.source_values(event)
    else:
        with pytest.raises(InvalidTransition) as info:
            states.transition(event, state, what="record 'k'")
        message = str(info.value)
        assert f"from {state.value} to {states.target(event).value}" in message
        assert "record 'k'" in message
        assert state not in states.sources(event)


def test_done_is_final_without_force() -> None:
    assert not any(S.done in states.sources(event) for event in E)
