"""Headless Chromium for the browser tests: Debian's `chromium` driven by playwright.

The browser is the system's (`chromium`, or FARMHAND_TEST_CHROMIUM), launched through
playwright's `executable_path`: nothing is downloaded. When it or playwright is missing the
browser tests are skipped with the reason — except under CI=true, where that fails the run
(as an unreachable PostgreSQL does in tests/support/databases.py).
"""

from __future__ import annotations

import os
import shutil
from functools import cache

import pytest

#: No sandbox (containers run as root); no background traffic to Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]


def chromium_path() -> str | None:
    """The Chromium executable to drive."""
    return os.environ.get("FARMHAND_TEST_CHROMIUM") or shutil.which("chromium")


@cache
def chromium_problem() -> str | None:
    """Why the browser tests cannot run (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"playwright is not installed ({exc})"
    if chromium_path() is None:
        return "chromium is not installed (apt-get install chromium, or set FARMHAND_TEST_CHROMIUM)"
    return None


def require_chromium() -> str:
    """The Chromium path; skips (or, under CI=true, fails) when there is none."""
    problem = chromium_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs a browser: {problem}", pytrace=False)
        pytest.skip(f"browser tests skipped: {problem}")
    path = chromium_path()
    assert path is not None
    return path
