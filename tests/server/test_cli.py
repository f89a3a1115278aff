"""`farmhand server` start-up errors: one clear line and a non-zero exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_server_refuses_to_start_on_a_bad_storage_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    env["FARMHAND_STORAGE_URL"] = "ftp://example.org/blobs"
    argv = [sys.executable, "-m", "farmhand", "server", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "cannot open the blob store" in done.stderr and "ftp://example.org/blobs" in done.stderr
    assert "Traceback" not in done.stderr
