"""The `farmhand` command against a real server process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from farmhand import wire
from farmhand.cli.files.tasklists import key_of
from tests.conftest import LiveServer

FARMHAND = [sys.executable, "-m", "farmhand"]


def farmhand(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FARMHAND, *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_submit_status_ls_show_cancel_retry(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.client_env()
    one, two = (key_of(command, Counter()) for command in ("echo one", "echo two"))
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo one\n# skip me\necho two\n")
    r = farmhand("submit", str(tasks), "--campaign", "c", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "submitted 2 records to c:1"
    r = farmhand("submit", str(tasks), "--campaign", "c", env=env)
    assert r.stdout == "submitted 0 records to c:1; skipped 2 whose keys already exist\n"
    status = json.loads(farmhand("status", "--json", env=env).stdout)
    (campaign,) = status["campaigns"]
    assert campaign["name"] == "c" and campaign["counts"]["ready"] == 2
    records = json.loads(farmhand("ls", "records", "--json", env=env).stdout)
    assert [(r["key"], r["state"]) for r in records] == [(one, "ready"), (two, "ready")]
    table = farmhand("ls", "records", env=env).stdout.splitlines()
    assert table[0].split() == ["ID", "KEY", "STATE", "ATTEMPTS", "ERROR", "RESULT"]
    r = farmhand("cancel", two, "--campaign", "c", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "cancelled 1 records"
    shown = farmhand("show", two, "--campaign", "c", env=env).stdout
    assert "state:        cancelled" in shown and "echo two" in shown
    r = farmhand("cancel", two, "--campaign", "c", env=env)
    assert r.returncode == 1
    assert r.stderr.startswith(f"farmhand: error: record '{two}' cannot go from cancelled to")
    assert farmhand("retry", two, "--campaign", "c", env=env).returncode == 0
    assert (
        json.loads(farmhand("show", two, "--campaign", "c", "--json", env=env).stdout)["state"]
        == "ready"
    )


def test_status_says_why_ready_records_are_not_moving(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    path = tmp_path / "md.toml"
    path.write_text(
        '[campaign]\nname = "md"\n[campaign.defaults]\nrunner = "lammps"\n'
        '[[records]]\nkey = "a"\ncommand = "lmp -in a"\n'
        '[[records]]\nkey = "b"\ncommand = "lmp -in b"\n'
    )
    assert farmhand("submit", str(path), env=env).returncode == 0
    r = farmhand("status", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\nnot moving:\n  2 ready records, no live agent\n")
    node = wire.AgentRegister(name="n", host="h", slots=1, runners=["subprocess"])
    live_server.client().register(node)
    r = farmhand("status", env=env)
    expected = "2 ready records need runner 'lammps', offered by no live agent"
    assert r.stdout.endswith(f"\nnot moving:\n  {expected}\n"), r.stdout
    answer = json.loads(farmhand("status", "--json", env=env).stdout)
    assert answer["ready"] == 2 and answer["agents"]["live"] == 1
    assert [(s["reason"], s["runner"], s["count"]) for s in answer["stuck"]] == [
        ("runner", "lammps", 2)
    ]


def test_toml_submission_creates_the_campaign_with_defaults(
    live_server: LiveServer, tmp_path: Path
) -> None:
    path = tmp_path / "relax.toml"
    path.write_text(
        '[campaign]\nname = "relax"\nsoftware = "lammps"\n'
        "[campaign.defaults]\nmax_attempts = 2\n"
        '[[records]]\nkey = "a"\ncommand = "echo a"\n'
        "[records.run_args]\nwalltime = 600\n"
    )
    r = farmhand("submit", str(path), env=live_server.client_env())
    assert r.returncode == 0, r.stderr
    (campaign,) = live_server.client().campaigns()
    assert (campaign.name, campaign.software, campaign.defaults) == (
        "relax",
        "lammps",
        {"max_attempts": 2},
    )
    (record,) = live_server.client().records(campaign_id=campaign.id)
    assert record.max_attempts == 2
    assert record.derived_run_args == {"max_attempts": 2, "walltime": 600}


def test_token_create_prints_a_working_token(live_server: LiveServer) -> None:
    r = farmhand("token", "create", "--role", "submitter", env=live_server.client_env())
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    r = farmhand("status", env=live_server.client_env(secret))
    assert r.returncode == 0 and "no campaigns yet" in r.stdout


def test_cli_errors_are_one_line_and_nonzero(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.client_env()
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    cases = [
        (("submit", str(empty), "--campaign", "c"), env, "holds no records"),
        (("submit", str(tmp_path / "missing.txt"), "--campaign", "c"), env, "cannot read"),
        (("status",), {**env, "FARMHAND_TOKEN": "fh_wrong"}, "unknown or revoked token"),
        (("status",), {k: v for k, v in env.items() if k != "FARMHAND_TOKEN"}, "no token"),
        (("status",), {**env, "FARMHAND_SERVER": "http://127.0.0.1:9"}, "cannot reach"),
        (("show", "nokey"), env, "no record with key 'nokey'"),
        (("show", "12345"), env, "record 12345 does not exist"),
        (("ls", "records", "--campaign", "ghost"), env, "no campaign 'ghost'"),
    ]
    oversized = tmp_path / "big.txt"
    oversized.write_text("echo " + "x" * 70_000 + "\n")
    cases.append((("submit", str(oversized), "--campaign", "c"), env, "line 1: command"))
    for args, case_env, needle in cases:
        r = farmhand(*args, env=case_env)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("farmhand: error: "), (args, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert live_server.client().campaigns() == []


def test_token_list_and_revoke(live_server: LiveServer) -> None:
    env = live_server.client_env()
    r = farmhand("token", "create", "--role", "agent", "--name", "node-7", "--json", env=env)
    created = json.loads(r.stdout)
    r = farmhand("token", "list", env=env)
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["ID", "ROLE", "NAME", "CREATED_AT", "REVOKED"]
    assert any(line.split()[:3] == [str(created["id"]), "agent", "node-7"] for line in rows)
    assert created["token"] not in r.stdout
    r = farmhand("token", "revoke", str(created["id"]), "424242", env=env)
    assert r.returncode == 1
    assert r.stdout.strip() == f"revoked token {created['id']} (agent, node-7)"
    assert r.stderr.strip() == "farmhand: token 424242: token 424242 does not exist"
    r = farmhand("token", "list", "--json", env=env)
    (row,) = [t for t in json.loads(r.stdout) if t["id"] == created["id"]]
    assert row["revoked"] is True
    r = farmhand("status", env=live_server.client_env(created["token"]))
    assert r.returncode != 0 and "unknown or revoked token" in r.stderr
