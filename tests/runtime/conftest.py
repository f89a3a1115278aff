"""Agent-side tests: SQLite only, the `probe` and `spawn` helpers
(tests/support/agent_side.py), and `cutoff`: a relay in front of the live server."""

from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer
from tests.support.agent_side import backend, probe, spawn  # noqa: F401
from tests.support.cutoff import Cutoff


@pytest.fixture
def cutoff(live_server: LiveServer) -> Iterator[Cutoff]:
    """A relay to `live_server` that the test can cut, or hold requests at."""
    relay = Cutoff(live_server.port)
    yield relay
    relay.close()
