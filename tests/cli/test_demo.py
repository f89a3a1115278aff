"""`farmhand demo` runs the sample campaign end to end and exits 0."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from farmhand.client import FarmhandClient


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


def test_demo_keep_leaves_the_server_running_and_says_how_to_reach_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "farmhand", "demo", "--records", "5", "--agents", "1", "--keep"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    kept = re.search(r"^kept (\S+)$", out.stdout, re.M)
    pid = re.search(r"the server keeps running \(pid (\d+)\)", out.stdout)
    reach = re.search(r"export FARMHAND_SERVER=(\S+) FARMHAND_TOKEN=(\S+)", out.stdout)
    assert kept and pid and reach, out.stdout
    try:
        with FarmhandClient(reach[1], reach[2]) as client:
            (campaign,) = client.campaigns()
            assert campaign.name == "demo" and sum(campaign.counts.values()) == 8
        assert f"stop it with: kill {pid[1]}" in out.stdout
        assert Path(kept[1], "server.log").exists()
    finally:
        os.kill(int(pid[1]), signal.SIGTERM)
        shutil.rmtree(kept[1], ignore_errors=True)
