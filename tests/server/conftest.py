"""Fixtures for the server's tests: the same test against both places a snapshot's bytes can
live."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

#: Where a small snapshot goes: the database (the default for small ones), or the blob store
#: (with `inline_snapshot_bytes` below its size).
WHERE = {"database": 64 * 1024, "blob store": 0}


@pytest.fixture(params=sorted(WHERE))
def where(request: pytest.FixtureRequest) -> str:
    """Where the test's small snapshots are kept: "database" or "blob store"."""
    return request.param


@pytest.fixture
def placed(make_api: Callable[..., TestClient], where: str) -> TestClient:
    """The app, keeping small snapshots in the database or in the blob store (`where`)."""
    return make_api(inline_snapshot_bytes=WHERE[where])
