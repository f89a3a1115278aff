"""A run's command cannot find its agent's token: not in its own environment, not in the
environment or command line of any of its ancestors (`/proc/PID/environ` keeps what a
process was started with, whatever it later removes from `os.environ`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from farmhand import wire
from tests.conftest import LiveServer
from tests.e2e.agents.test_agents import FARMHAND

# The database plays no part: SQLite only.
pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

# Everything the command can see of itself and its ancestors, up to PID 1.
SNOOP = """
out={out}
pid=$$
while [ "$pid" -gt 1 ]; do
    echo "== $pid" >> "$out"
    for what in environ cmdline; do
        tr '\\000' '\\n' < /proc/$pid/$what >> "$out" 2>/dev/null || echo "(no $what)" >> "$out"
    done
    pid=$(awk '/^PPid:/ {{print $2}}' /proc/$pid/status)
done
echo "== env" >> "$out"; env >> "$out"
echo "== umask $(umask)" >> "$out"
cat "$out"
"""


@pytest.mark.parametrize("how", ["env", "env-script", "flag", "file-flag", "file-env"])
def test_a_command_cannot_read_its_agents_token(
    live_server: LiveServer, tmp_path: Path, how: str
) -> None:
    client = live_server.client()
    token = client.create_token(wire.Role.agent, name="snooped").token
    campaign = client.create_campaign("snoop")
    seen = tmp_path / "seen.txt"
    client.submit(campaign.id, [wire.RecordSpec(key="snoop", command=SNOOP.format(out=seen))])

    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    env["FARMHAND_SERVER"] = live_server.url
    options = ["--workdir", str(tmp_path / "work"), "--exit-when-idle", "1", "--poll", "1"]
    program = FARMHAND
    if how.startswith("env"):
        env["FARMHAND_TOKEN"] = token
        if how == "env-script":  # the console script restarts as itself, not as -m
            program = [str(Path(sys.executable).parent / "farmhand")]
    elif how == "flag":
        options += ["--token", token]
    elif how == "file-flag":
        options += ["--token-file", str(token_file)]
    else:
        env["FARMHAND_TOKEN_FILE"] = str(token_file)
    done = subprocess.run(
        [*program, "agent", "--name", "snooper", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    (record,) = client.records(campaign_id=campaign.id)
    assert record.state == "done", record.error
    text = seen.read_text()
    assert "--exit-when-idle" in text  # the walk did reach the agent's own process
    if how == "env-script":
        # (the walk reaches pytest too, whose own arguments may hold a -m)
        assert f"{program[0]}\nagent\n--secrets-fd" in text
        assert "\n-m\nfarmhand.agent\n" not in text
    assert token not in text
    assert token not in (client.record(record.id).runs[-1].stdout_tail or "")
    own_env = text.split("== env\n", 1)[1]
    assert "FARMHAND_TOKEN" not in own_env  # neither the token nor the file's path
    assert token not in done.stdout + done.stderr
