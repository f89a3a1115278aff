"""Fixtures for end-to-end tests that start `farmhand agent` processes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import start_agent

StartAgent = Callable[..., subprocess.Popen]


@pytest.fixture
def agents(tmp_path: Path, live_server_factory: Callable[..., LiveServer]) -> Iterator[StartAgent]:
    """`agents(server, name, *options)` starts `farmhand agent` (log: tmp_path/agent-NAME.log,
    work: tmp_path/work-NAME); whatever still runs after the test is killed, before the
    servers stop."""
    started: list[subprocess.Popen] = []

    def start(server: LiveServer, name: str, *options: str) -> subprocess.Popen:
        process = start_agent(server, tmp_path, name, *options)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
