"""Agent-side tests: SQLite only, and the `probe` and `spawn` helpers
(tests/support/agent_side.py)."""

from tests.support.agent_side import backend, probe, spawn  # noqa: F401
