"""Small things a user trips on: `--version`, a server URL given with /api/v1, and a closed
pipe (`farmhand ls records | head`) ending quietly."""

from __future__ import annotations

import subprocess

from farmhand import wire
from tests.cli.test_main import FARMHAND, farmhand
from tests.conftest import LiveServer


def test_version() -> None:
    r = farmhand("--version", env={})
    assert r.returncode == 0 and r.stdout.startswith("farmhand ") and r.stdout.strip()[9:]


def test_a_server_url_with_the_api_prefix_names_the_root(live_server: LiveServer) -> None:
    env = {**live_server.client_env(), "FARMHAND_SERVER": f"{live_server.url}/api/v1/"}
    r = farmhand("ls", "campaigns", env=env)
    assert r.returncode == 1
    assert r.stderr == (
        f"farmhand: error: the server URL is the root, without /api/v1: {live_server.url}\n"
    )


def test_a_closed_pipe_ends_quietly(live_server: LiveServer) -> None:
    client = live_server.client()
    c = client.create_campaign("many")
    client.submit(c.id, [wire.RecordSpec(key=f"key-{i:05d}", command="true") for i in range(3000)])
    reader = subprocess.Popen(
        [*FARMHAND, "ls", "records", "--limit", "0"],
        env=live_server.client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.readline()  # then hang up, as `head -1` does
    reader.stdout.close()
    assert reader.wait(timeout=60) == 0
    assert b"ID" in first and reader.stderr.read() == b""


def test_every_option_has_help_text() -> None:
    import argparse

    from farmhand.cli.main import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.help is None and action.dest != "help":
                missing.append(f"farmhand {' '.join(path)} {action.option_strings or action.dest}")

    walk(build_parser(), [])
    assert missing == []
