"""`farmhand submit` with sweeps and `--dry-run`, against a real server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_main import farmhand
from tests.conftest import LiveServer

SWEEP = """
[campaign]
name = "md"
[[sweep]]
key = "a{a}-T{T}"
command = "lmp -var T {T} -var a {a} -in in.lmp"
params = { a = [4.0, 4.05, 4.1], T = [300, 600, 900] }
inputs = ["in.lmp", "Al.eam"]
tags = ["al"]
"""


def write_sweep(tmp_path: Path) -> Path:
    (tmp_path / "in.lmp").write_text("units metal\n")
    (tmp_path / "Al.eam").write_text("Al potential\n")
    path = tmp_path / "md.toml"
    path.write_text(SWEEP)
    return path


def test_a_3x3_sweep_makes_9_records(live_server: LiveServer, tmp_path: Path) -> None:
    r = farmhand("submit", str(write_sweep(tmp_path)), env=live_server.client_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "submitted 9 records to md:1"
    assert "uploaded 2 input file(s)" in r.stderr
    client = live_server.client()
    (campaign,) = client.campaigns()
    records = list(client.records(campaign_id=campaign.id))
    expected = [
        (f"a{a}-T{t}", f"lmp -var T {t} -var a {a} -in in.lmp", {"T": t, "a": a})
        for a in (4.0, 4.05, 4.1)
        for t in (300, 600, 900)
    ]
    assert [(rec.key, rec.command, rec.params) for rec in records] == expected
    assert {tuple(sorted(rec.inputs)) for rec in records} == {("Al.eam", "in.lmp")}
    assert all(rec.tags == ["al"] for rec in records)
    assert client.campaign(campaign.id).params == ["T", "a"]


def test_a_zipped_sweep_and_a_record_with_params(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "eos.toml"
    path.write_text(
        '[campaign]\nname = "eos"\n'
        '[[records]]\nkey = "ref-{a}"\ncommand = "relax --a {a} --hot {hot}"\n'
        "params = { a = 4.05, hot = false }\n"
        '[[sweep]]\ncommand = "run --a {a} --phase {phase}"\n'
        'params = { a = [4.0, 4.1], phase = ["fcc", "bcc"] }\nzip = true\n'
    )
    r = farmhand("submit", str(path), env=live_server.client_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "submitted 3 records to eos:1"
    client = live_server.client()
    (campaign,) = client.campaigns()
    records = list(client.records(campaign_id=campaign.id))
    assert [(rec.key, rec.command, rec.params) for rec in records] == [
        ("ref-4.05", "relax --a 4.05 --hot false", {"a": 4.05, "hot": False}),
        ("a=4.0,phase=fcc", "run --a 4.0 --phase fcc", {"a": 4.0, "phase": "fcc"}),
        ("a=4.1,phase=bcc", "run --a 4.1 --phase bcc", {"a": 4.1, "phase": "bcc"}),
    ]


def test_dry_run_sends_nothing_and_shows_the_first_keys(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    path = write_sweep(tmp_path)
    r = farmhand("submit", "--dry-run", str(path), env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == (
        "dry run: would submit 9 records to campaign md with 2 distinct input file(s); nothing sent"
    )
    assert [line.split(None, 1) for line in lines[1:6]] == [
        ["a4.0-T300", "lmp -var T 300 -var a 4.0 -in in.lmp"],
        ["a4.0-T600", "lmp -var T 600 -var a 4.0 -in in.lmp"],
        ["a4.0-T900", "lmp -var T 900 -var a 4.0 -in in.lmp"],
        ["a4.05-T300", "lmp -var T 300 -var a 4.05 -in in.lmp"],
        ["a4.05-T600", "lmp -var T 600 -var a 4.05 -in in.lmp"],
    ]
    assert lines[6:] == ["  … and 4 more"]
    client = live_server.client()
    assert client.campaigns() == []
    # Into an existing campaign: its records stay as they were, nothing is uploaded.
    path.write_text(SWEEP.replace("300, 600, 900", "300"))
    assert farmhand("submit", str(path), env=env).stdout.strip() == "submitted 3 records to md:1"
    path.write_text(SWEEP)
    r = farmhand("submit", "--dry-run", "--json", str(path), env=env)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert (shown["dry_run"], shown["campaign"], shown["count"]) == (True, "md", 9)
    assert shown["records"][1]["params"] == {"T": 600, "a": 4.0}
    (campaign,) = client.campaigns()
    assert sum(campaign.counts.values()) == 3
    assert len(list(client.records(campaign_id=campaign.id))) == 3
    # No server is needed at all.
    bare = {k: v for k, v in env.items() if not k.startswith("FARMHAND_")}
    r = farmhand("submit", "--dry-run", str(path), env=bare)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("dry run: would submit 9 records to campaign md")


def test_a_bad_sweep_is_one_line_and_creates_nothing(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    good = '[[records]]\nkey = "first"\ncommand = "true"\n'
    cases = [
        (
            '[[sweep]]\ncommand = "lmp -var T {T} -in {inp}"\nparams = { T = [300, 600] }\n',
            "sweep 1 (command 'lmp -var T {T} -in {inp}'): placeholder {inp} is not a param "
            "(params: T)",
        ),
        (
            '[[sweep]]\ncommand = "a {T}"\nparams = { T = [1] }\n'
            '[[sweep]]\ncommand = "b {a} {T}"\nparams = { a = [1, 2, 3], T = [1, 2] }\n'
            "zip = true\n",
            "sweep 2 (command 'b {a} {T}'): zip needs lists of one length, not a: 3, T: 2",
        ),
        (
            '[[sweep]]\nkey = "T{T}"\ncommand = "b {a} {T}"\nparams = { a = [1, 2], T = [1] }\n',
            "sweep 1 (command 'b {a} {T}'): key 'T1' comes from both T=1,a=1 and T=1,a=2",
        ),
        (
            '[[sweep]]\nkey = "first"\ncommand = "echo {T}"\nparams = { T = 1 }\n',
            "key 'first' appears twice (records[0] and sweep 1 (command 'echo {T}'))",
        ),
    ]
    for number, (sweep, needle) in enumerate(cases):
        path = tmp_path / f"bad{number}.toml"
        path.write_text('[campaign]\nname = "bad"\n' + good + sweep)
        for extra in ([], ["--dry-run"]):
            r = farmhand("submit", *extra, str(path), env=env)
            assert r.returncode == 1, (sweep, r.stdout, r.stderr)
            assert r.stderr.startswith(f"farmhand: error: {path}: {needle}"), r.stderr
            assert r.stderr.count("\n") == 1, r.stderr
            assert r.stdout == ""
    assert live_server.client().campaigns() == []


def test_braces_in_a_file_without_params_submit_unchanged(
    live_server: LiveServer, tmp_path: Path
) -> None:
    commands = [
        "awk '{print $1}' log.lammps",
        """echo '{"a": {"b": 1}}' > in.json""",
        r"find . -name '*.dump' -exec gzip {} \;",
        "echo {T} {{T}} ${HOME}",
    ]
    path = tmp_path / "old.toml"
    path.write_text(
        '[campaign]\nname = "old"\n'
        + "".join(
            f"[[records]]\nkey = 'r{n}-{{x}}'\ncommand = '''{command}'''\n"
            for n, command in enumerate(commands)
        )
    )
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("\n".join(commands) + "\n")
    env = live_server.client_env()
    assert farmhand("submit", str(path), env=env).returncode == 0
    r = farmhand("submit", str(tasks), "--campaign", "tasks", env=env)
    assert r.returncode == 0, r.stderr
    client = live_server.client()
    by_name = {c.name: c for c in client.campaigns()}
    old = list(client.records(campaign_id=by_name["old"].id))
    assert [(rec.key, rec.command, rec.params) for rec in old] == [
        (f"r{n}-{{x}}", command, {}) for n, command in enumerate(commands)
    ]
    listed = list(client.records(campaign_id=by_name["tasks"].id))
    assert [rec.command for rec in listed] == commands


def test_a_resubmission_says_which_skipped_records_differ(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    path = tmp_path / "t.toml"
    three = "".join(f"[[records]]\nkey = '{k}'\ncommand = 'echo {k}'\n" for k in ("a", "b", "c"))
    path.write_text(three)
    assert farmhand("submit", str(path), "--campaign", "t", env=env).returncode == 0
    path.write_text(three.replace("'echo b'", "'echo B'"))
    r = farmhand("submit", str(path), "--campaign", "t", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "submitted 0 records to t:1; skipped 3 whose keys already exist",
        "1 of the skipped differ from what is stored: b (command) "
        "(--force replaces them; done ones with --force-ignores-success too)",
    ]
