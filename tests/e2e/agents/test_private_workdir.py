"""What an agent keeps on disk (run directories, outbox reports with their lease tokens and
results, archives) is its user's alone, umask 077, unless --umask or FARMHAND_UMASK say
otherwise; the commands themselves keep the umask the agent was started with."""

from __future__ import annotations

import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import FARMHAND, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

COMMAND = (
    "umask > {out}/umask; touch {out}/started; "
    "while [ ! -f {out}/gate ]; do sleep 0.05; done; "
    """printf '{{"ok": true}}' > results.json; """
    # Random bytes: an archive over 64 KiB, a file of its own in outbox/archives/.
    "head -c 100000 /dev/urandom > noise.bin"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize(
    ("setting", "dirs", "files"),
    [([], 0o700, 0o600), (["--umask", "027"], 0o750, 0o640), (["env"], 0o750, 0o640)],
)
def test_run_dirs_outbox_and_archives_are_private(
    live_server_factory: Callable[..., LiveServer],
    tmp_path: Path,
    setting: list[str],
    dirs: int,
    files: int,
) -> None:
    server = live_server_factory(process=True)
    client = server.client()
    campaign = client.create_campaign("private")
    client.submit(campaign.id, [wire.RecordSpec(key="r", command=COMMAND.format(out=tmp_path))])
    env = server.client_env()
    if setting == ["env"]:
        env["FARMHAND_UMASK"], setting = "027", []
    work = tmp_path / "work"
    agent = subprocess.Popen(
        [*FARMHAND, "agent", "--workdir", str(work), "--poll", "1", *setting],
        env=env,
        stdout=(tmp_path / "agent.log").open("wb"),
        stderr=subprocess.STDOUT,
        umask=0o022,  # the usual default, which made everything world-readable
    )
    try:
        wait_for(lambda: (tmp_path / "started").exists(), what="the command to start")
        server.stop(signal.SIGKILL)  # so that the report stays in the outbox
        (tmp_path / "gate").touch()
        outbox = work / "outbox"
        wait_for(lambda: list(outbox.glob("[0-9]*.json")), what="the report in the outbox")
        wait_for(lambda: list((outbox / "archives").glob("*")), what="the archive")
        found = {path: mode(path) for path in [work, *work.rglob("*")]}
    finally:
        agent.kill()
        agent.wait(timeout=30)

    assert (tmp_path / "umask").read_text().strip() == "0022"  # the command's own
    (results,) = [p for p in found if p.name == "results.json"]
    assert found.pop(results) == 0o644  # written by the command, with its umask
    (noise,) = [p for p in found if p.name == "noise.bin"]
    assert found.pop(noise) == 0o644
    run_dir = results.parent
    assert run_dir.is_relative_to(work / "runs")
    assert all(p.is_relative_to(work) for p in found)
    assert {str(p.relative_to(work)) for p in found} >= {
        ".",
        "runs",
        str(run_dir.relative_to(work)),
        f"{run_dir.relative_to(work)}/stdout.txt",
        "outbox",
        "outbox/archives",
    }
    assert {p: m for p, m in found.items() if p.is_dir()} == {p: dirs for p in found if p.is_dir()}
    assert {p: m for p, m in found.items() if not p.is_dir()} == {
        p: files for p in found if not p.is_dir()
    }
