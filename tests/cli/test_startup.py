"""The agent's start loads only what it needs (DESIGN.md: agent start <= 250 ms, <= 60 MB;
the figures are `bench/startup.py`'s, never asserted here). Each check runs in a fresh
interpreter, since what a module loads is only visible before anything else was imported."""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import sys

import pytest

from farmhand.cli import main as cli
from farmhand.client import FarmhandClient

#: What `farmhand agent --help` used to load and no longer does: the other commands' modules,
#: the client and the runtime (httpx, httpcore), and httpx's own command line (click, rich,
#: pygments: installed with the server extra, never used by the agent).
NOT_FOR_AGENT_HELP = [
    "farmhand.cli.bundles",
    "farmhand.cli.records.listing",
    "farmhand.cli.records.results",
    "farmhand.cli.snapshots",
    "farmhand.cli.records.steering",
    "farmhand.cli.campaigns.submit",
    "farmhand.cli.files.bundles",
    "farmhand.client.api",
    "farmhand.client.transfer",
    "farmhand.runtime.agent",
    "httpx",
    "httpcore",
    "ssl",
    "importlib.metadata",
    "click",
    "rich",
    "pygments",
]


def loaded_after(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; what it left in `result`, and the modules loaded."""
    program = (
        "import json, sys\nresult = {}\n"
        f"{code}\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'result': result}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout.splitlines()[-1])


def run_command(*argv: str) -> str:
    """Python code running the `farmhand` console script with `argv` (to its exit)."""
    return (
        f"import runpy; sys.argv = ['farmhand', *{list(argv)!r}]\n"
        "try:\n    runpy.run_module('farmhand', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "from farmhand import wire\n"
        "result['built'] = wire.AgentRegister.__pydantic_complete__\n"
    )


def test_agent_help_loads_no_other_command_no_client_and_builds_no_model() -> None:
    seen = loaded_after(run_command("agent", "--help"))
    assert "farmhand.cli.agent" in seen["modules"]
    assert [m for m in NOT_FOR_AGENT_HELP if m in seen["modules"]] == []
    assert seen["result"] == {"built": False}  # wire models are built on first use


def test_version_loads_no_command_module() -> None:
    seen = loaded_after(run_command("--version"))
    shared = ("farmhand.cli.main", "farmhand.cli.base")
    commands = [m for m in seen["modules"] if m.startswith("farmhand.cli.") and m not in shared]
    assert commands == []
    assert [m for m in ("httpx", "farmhand.client.api") if m in seen["modules"]] == []


def test_the_token_re_exec_happens_before_httpx_and_pydantic_are_loaded() -> None:
    # `python -m farmhand agent` with FARMHAND_TOKEN imports this, then starts itself again.
    seen = loaded_after("from farmhand.client import credentials")
    heavy = ("httpx", "pydantic", "farmhand.wire", "farmhand.client.api")
    assert [m for m in heavy if m in seen["modules"]] == []


def test_the_farmhand_command_loads_httpx_without_its_command_line() -> None:
    code = (
        "import farmhand.__main__ as entry\nentry._skip_httpx_command_line()\n"
        "import httpx\nfrom farmhand.client import FarmhandClient\n"
        "result['main'] = [httpx.main.__module__, sys.modules['httpx._main']]\n"
    )
    seen = loaded_after(code)
    assert "farmhand.client.api" in seen["modules"]
    assert [m for m in ("click", "rich", "pygments") if m in seen["modules"]] == []
    assert seen["result"] == {"main": ["httpx", None]}  # httpx's stub, which says how to get it


@pytest.mark.parametrize(("server", "loads"), [("http://node7:8000", 0), ("https://farm", 1)])
def test_an_http_server_costs_no_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, server: str, loads: int
) -> None:
    calls: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        calls.append(args)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    with FarmhandClient(server, "fh_token") as client:
        assert client.server == server
    assert len(calls) == loads


def commands_of(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_command_is_found_in_its_family_alone() -> None:
    everything = commands_of(cli.build_parser())
    named = {*cli.EXTERNAL, *cli.OWN, *(n for names in cli.FAMILIES.values() for n in names)}
    assert everything == named  # a new command is listed in FAMILIES or OWN
    for command in sorted(everything):
        assert command in commands_of(cli.build_parser(command))


def test_a_command_parses_the_same_with_its_family_alone() -> None:
    for argv in (["agent", "--slots", "3", "--poll", "5"], ["ls", "records", "--json"]):
        alone = cli.build_parser(cli._named(argv)).parse_args(argv)
        full = cli.build_parser().parse_args(argv)
        assert vars(alone) == vars(full)
