"""`farmhand agent`: its options refuse bad values clearly; `--display` draws the panel;
rich is loaded only for `--display`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from farmhand import wire
from tests.conftest import LiveServer

FARMHAND = [sys.executable, "-m", "farmhand"]


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FARMHAND, "agent", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--disk-limit", "120%"], "not a disk limit: '120%' (give a percentage such as 90%)"),
        (["--walltime", "soon"], "not a duration: 'soon'"),
        (["--walltime-margin", "-5"], "not a duration: '-5'"),
        (["--checkpoint-signal", "NOPE"], "not a signal: 'NOPE' (e.g. TERM, USR1, INT)"),
        (["--prefetch", "-1"], "must be at least 0, got -1"),
        (["--prefetch", "some"], "not a whole number: 'some'"),
        (["--slots", "0"], "must be at least 1, got 0"),
        (["--checkpoint-interval", "often"], "not a duration: 'often'"),
        (["--max-extract-bytes", "lots"], "not a size: 'lots' (e.g. 64G, 500M, 1000000)"),
        (["--max-extract-bytes", "0"], "must be at least 1 byte, got '0'"),
        (["--max-extract-files", "0"], "must be at least 1, got 0"),
        (["--cache-limit", "big"], "not a size: 'big' (e.g. 64G, 500M, 1000000)"),
        (["--umask", "rw"], "not an octal umask: 'rw' (e.g. 077)"),
        (["--umask", "1777"], "a umask is 000 to 777, not '1777'"),
    ],
)
def test_bad_options_are_refused_by_name(args: list[str], message: str) -> None:
    done = agent("--server", "http://127.0.0.1:9", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_a_bad_farmhand_umask_is_refused_by_name(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FARMHAND_UMASK": "u=rwx"}
    done = agent("--server", "http://127.0.0.1:9", "--workdir", str(tmp_path), env=env)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "farmhand: error: FARMHAND_UMASK: not an octal umask: 'u=rwx' (e.g. 077)"
    )


def test_a_poll_beyond_the_longest_long_poll_is_refused() -> None:
    done = agent("--server", "http://127.0.0.1:9", "--poll", "2m")
    assert done.returncode == 1
    assert done.stderr.strip() == "farmhand: error: --poll is at most 60 seconds"


def test_display_draws_the_panel_and_the_agent_works_under_it(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    campaign = client.create_campaign("display")
    client.submit(campaign.id, [wire.RecordSpec(key="shown", command="echo '{}' > results.json")])
    env = live_server.client_env()
    done = agent(
        "--display",
        "--name",
        "panel",
        "--workdir",
        str(tmp_path / "w"),
        "--exit-when-idle",
        "1",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "farmhand agent panel" in done.stderr  # the panel's last frame
    assert "done 1 · failed 0" in done.stderr
    assert "done shown (run" in done.stderr  # log lines go above it
    assert next(client.records(campaign_id=campaign.id)).state == "done"


def test_rich_is_imported_only_inside_the_display_functions() -> None:
    """rich is optional: no module of the agent imports it (or the display module) at the
    top level. (httpx itself imports rich at start when click, rich and pygments are all
    installed, as in the test environment; a compute node has none of them.)"""
    agent_dir = Path(__file__).resolve().parent.parent.parent / "agent"
    top_level = []
    for path in agent_dir.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            bad = ("rich", "farmhand.cli.display")
            top_level += [f"{path.name}: {n}" for n in names if n.startswith(bad)]
    assert top_level == []
