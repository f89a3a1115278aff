"""`farmhand demo` runs the sample campaign end to end and exits 0."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_a_campaign_and_prints_the_counts() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "farmhand", "demo", "--records", "20"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submitted 23 records to campaign demo v1" in out.stdout
    counts = dict(re.findall(r"^  (done|failed)\s+(\d+)$", out.stdout, re.M))
    assert counts == {"done": "21", "failed": "2"}
    assert "failed: always-fails: exit code 3" in out.stdout
    assert "results.json is not valid JSON" in out.stdout
    assert re.search(r"http://127\.0\.0\.1:\d+/docs", out.stdout)
