"""`farmhand submit` checks everything before it creates anything (issue 18): the file's
format, its run_args and durations, parents, inputs; tasklist keys that survive edits; and
`--force` that replaces exactly what changed. Through the real CLI against a real server, on
both databases."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.cli.files.tasklists import key_of
from tests.cli.test_main import FARMHAND, farmhand
from tests.cli.test_semantics import finish
from tests.conftest import LiveServer

AL_MD = """\
[campaign]
name = "al-md"
inputs = ["in.lmp"]

[[records]]
key = "relax"
command = "lmp -in in.lmp"

[[records]]
key = "md"
command = "lmp -in in.lmp -var T 600"
parents = ["relax"]
[records.run_args]
timeout = "1h"
walltime = "2h"
"""


def nothing_on(server: LiveServer) -> None:
    """The server holds no campaign, no record and no snapshot."""
    client = server.client()
    assert client.campaigns() == []
    assert list(client.records()) == []
    assert list(client.snapshots()) == []


def test_al_md_TOML_is_read_as_a_campaign_file(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.client_env()
    (tmp_path / "in.lmp").write_text("units metal\n")
    path = tmp_path / "al-md.TOML"
    path.write_text(AL_MD)
    r = farmhand("submit", str(path), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "submitted 2 records to al-md:1\n"
    assert r.stderr == "uploaded 1 input file(s)\ncreated campaign al-md:1\n"
    client = live_server.client()
    records = {rec.key: rec for rec in client.records()}
    assert sorted(records) == ["md", "relax"]
    assert records["md"].run_args == {"timeout": "1h", "walltime": "2h"}


def test_the_format_comes_from_the_content_or_format(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    # No extension, TOML content: a campaign file.
    jobs = tmp_path / "jobs"
    jobs.write_text('[[records]]\nkey = "a"\ncommand = "true"\n')
    r = farmhand("submit", str(jobs), "--campaign", "sniffed", env=env)
    assert (r.returncode, r.stdout) == (0, "submitted 1 records to sniffed:1\n"), r.stderr
    # --format wins over the name: a tasklist called .toml, a campaign file called .txt.
    commands = tmp_path / "commands.toml"
    commands.write_text("echo one\necho two\n")
    r = farmhand("submit", str(commands), "--campaign", "listed", "--format", "tasklist", env=env)
    assert (r.returncode, r.stdout) == (0, "submitted 2 records to listed:1\n"), r.stderr
    table = tmp_path / "table.txt"
    table.write_text('key = "x"\n')  # TOML, but no campaign table: a tasklist by content
    r = farmhand("submit", str(table), "--campaign", "forced", "--format", "toml", env=env)
    assert r.returncode == 1 and "unknown table(s): key" in r.stderr
    client = live_server.client()
    assert [c.name for c in client.campaigns()] == ["sniffed", "listed"]
    listed = client.campaigns(name="listed")[0]
    assert [rec.command for rec in client.records(campaign_id=listed.id)] == [
        "echo one",
        "echo two",
    ]


def test_a_malformed_toml_names_its_line_and_creates_nothing(
    live_server: LiveServer, tmp_path: Path
) -> None:
    path = tmp_path / "al-md.TOML"
    path.write_text('[campaign]\nname = "al-md"\n[[records]]\nkey = relax\ncommand = "true"\n')
    r = farmhand("submit", str(path), env=live_server.client_env())
    assert r.returncode == 1
    assert r.stderr.startswith(f"farmhand: error: {path} is not valid TOML: ")
    assert "line 4" in r.stderr
    nothing_on(live_server)


BAD = {
    # Refused by the server: in a dry run before the upload, or (no inputs) in the
    # transaction that would have created the campaign.
    "unknown parent": (
        AL_MD.replace('parents = ["relax"]', 'parents = ["relx"]'),
        "record 'md' has unknown parents 'relx'",
    ),
    "unknown parent, no inputs": (
        AL_MD.replace('parents = ["relax"]', 'parents = ["relx"]').replace(
            'inputs = ["in.lmp"]', ""
        ),
        "record 'md' has unknown parents 'relx'",
    ),
    "unknown based_on": (
        AL_MD.replace('name = "al-md"', 'name = "al-md"\nbased_on = "al:3"'),
        "campaign 'al:3' does not exist",
    ),
    # Refused by `farmhand submit` before it asks the server anything.
    "max_attempts is no number": (
        AL_MD.replace('timeout = "1h"', 'max_attempts = "two"'),
        "run_args.max_attempts must be a whole number >= 1, got 'two'",
    ),
    "timeout is no duration": (
        AL_MD.replace('timeout = "1h"', 'timeout = "soon"'),
        "run_args.timeout must be a positive duration (seconds, 30m, 2h, 1d, MM:SS, "
        "HH:MM:SS or D-HH:MM:SS), got 'soon'",
    ),
    "a default is no duration": (
        AL_MD.replace('inputs = ["in.lmp"]', 'inputs = ["in.lmp"]\ndefaults = { timeout = "x" }'),
        "[campaign.defaults]: run_args.timeout must be a positive duration",
    ),
    "a missing input": (AL_MD.replace('"in.lmp"]', '"in.lmp", "Al.eam"]'), "'Al.eam' does not"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_refused_submission_leaves_no_campaign_record_or_upload(
    live_server: LiveServer, tmp_path: Path, case: str
) -> None:
    text, needle = BAD[case]
    (tmp_path / "in.lmp").write_text("units metal\n")
    path = tmp_path / "al-md.toml"
    path.write_text(text)
    r = farmhand("submit", str(path), env=live_server.client_env())
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("farmhand: error: ") and needle in r.stderr, r.stderr
    assert r.stdout == ""
    nothing_on(live_server)


def test_an_unknown_parent_in_an_existing_campaign_uploads_nothing(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    (tmp_path / "in.lmp").write_text("units metal\n")
    path = tmp_path / "al-md.toml"
    path.write_text(AL_MD.replace('inputs = ["in.lmp"]', ""))
    assert farmhand("submit", str(path), env=env).returncode == 0
    path.write_text(
        AL_MD.replace('key = "md"', 'key = "md2"').replace('parents = ["relax"]', "parents = [9]")
    )
    r = farmhand("submit", str(path), env=env)
    assert r.returncode == 1 and "record 'md2' has unknown parents 9" in r.stderr, r.stderr
    client = live_server.client()
    assert sorted(rec.key for rec in client.records()) == ["md", "relax"]
    assert list(client.snapshots()) == []


def test_a_timeout_takes_the_forms_walltime_takes_on_a_real_agent(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    path = tmp_path / "timeouts.toml"
    path.write_text(
        '[campaign]\nname = "t"\n[campaign.defaults]\nmax_attempts = 1\n'
        '[[records]]\nkey = "hour"\ncommand = "true"\nrun_args = { timeout = "1h" }\n'
        '[[records]]\nkey = "clock"\ncommand = "sleep 30"\n'
        'run_args = { timeout = "00:00:01" }\n'
    )
    assert farmhand("submit", str(path), env=env).returncode == 0
    agent = subprocess.run(
        [*FARMHAND, "agent", "--workdir", str(tmp_path / "work"), "--exit-when-idle", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert agent.returncode == 0, agent.stderr
    client = live_server.client()
    records = {rec.key: rec for rec in client.records()}
    assert (records["hour"].state, records["hour"].error) == ("done", None)
    assert (records["clock"].state, records["clock"].error) == ("failed", "timed out after 1 s")


def test_a_comment_line_and_reordering_keep_tasklist_keys(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    tasks = tmp_path / "tasks.txt"
    commands = [f"./run.sh {n}" for n in range(22)] + ["./run.sh 3"]  # one twice
    tasks.write_text("\n".join(commands) + "\n")
    r = farmhand("submit", str(tasks), "--campaign", "c", env=env)
    assert r.stdout == "submitted 23 records to c:1\n", r.stderr
    client = live_server.client()
    before = {rec.key: rec.command for rec in client.records()}
    assert before[key_of("./run.sh 3", Counter())] == "./run.sh 3"
    assert sum(1 for command in before.values() if command == "./run.sh 3") == 2
    finish(client, client.campaigns()[0].id)

    tasks.write_text("# the Al runs\n\n" + "\n".join(reversed(commands)) + "\n")
    r = farmhand("submit", str(tasks), "--campaign", "c", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "submitted 0 records to c:1; skipped 23 whose keys already exist\n"
    after = {rec.key: (rec.command, rec.state) for rec in client.records()}
    assert {key: command for key, (command, _) in after.items()} == before
    assert {state for _, state in after.values()} == {"done"}


def test_force_after_one_changed_command_reruns_only_that_one(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    tasks = tmp_path / "tasks.txt"
    commands = [f"./run.sh {n}" for n in range(22)]
    tasks.write_text("\n".join(commands) + "\n")
    assert farmhand("submit", str(tasks), "--campaign", "c", env=env).returncode == 0
    client = live_server.client()
    finish(client, client.campaigns()[0].id)
    commands[7] = "./run.sh 7 --tight"
    tasks.write_text("\n".join(commands) + "\n")
    r = farmhand(
        "submit", str(tasks), "--campaign", "c", "--force", "--force-ignores-success", env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "submitted 1 records to c:1; skipped 21 whose keys already exist "
        "(21 unchanged: farmhand retry reruns records)\n"
    )
    states = [(rec.command, rec.state) for rec in client.records()]
    assert states.count(("./run.sh 7 --tight", "ready")) == 1
    assert sum(1 for _, state in states if state == "done") == 22


TOML = "[campaign]\nname = 'f'\n" + "".join(
    f"[[records]]\nkey = 'r{n}'\ncommand = 'run {n}'\n" for n in range(5)
)


def test_force_replaces_exactly_the_records_whose_spec_changed_and_names_them(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    path = tmp_path / "f.toml"
    path.write_text(TOML)
    assert farmhand("submit", str(path), env=env).returncode == 0
    client = live_server.client()
    campaign_id = client.campaigns()[0].id
    done = finish(client, campaign_id)
    assert len(done) == 5
    path.write_text(TOML.replace("'run 2'", "'run 2 --tight'").replace("'run 4'", "'run 4 -v'"))

    r = farmhand("submit", str(path), "--force", env=env)
    assert r.stdout == (
        "submitted 0 records to f:1; skipped 5 whose keys already exist "
        "(3 unchanged: farmhand retry reruns records)\n"
        "2 of the skipped differ from what is stored: r2 (command), r4 (command) "
        "(done: --force --force-ignores-success replaces them)\n"
    ), r.stderr
    r = farmhand("submit", str(path), "--force", "--force-ignores-success", env=env)
    assert r.stdout == (
        "submitted 0 records to f:1; replaced 2 whose spec changed (queued again): r2, r4; "
        "skipped 3 whose keys already exist (3 unchanged: farmhand retry reruns records)\n"
    ), r.stderr
    by_key = {rec.key: rec for rec in client.records(campaign_id=campaign_id)}
    assert {k: (rec.state, rec.command) for k, rec in by_key.items()} == {
        "r0": ("done", "run 0"),
        "r1": ("done", "run 1"),
        "r2": ("ready", "run 2 --tight"),
        "r3": ("done", "run 3"),
        "r4": ("ready", "run 4 -v"),
    }
    # Not done and unchanged: --force leaves them be (their attempts, a live run).
    agent = client.register(wire.AgentRegister(name="holder", host="test", slots=1))
    (lease,) = client.claim(agent.agent.id, 1, campaign_id=campaign_id)
    r = farmhand("submit", str(path), "--force", "--json", env=env)
    assert r.returncode == 0, r.stderr
    held = client.record(lease.record_id)
    assert held.state == "claimed" and held.runs and held.runs[-1].state == "leased"


def test_a_tasklist_into_a_campaign_keyed_by_line_number_is_refused(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    client = live_server.client()
    old = client.create_campaign("legacy")
    specs = [wire.RecordSpec(key=str(n), command=f"echo {n}") for n in (1, 2, 4)]
    client.submit(old.id, specs)
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo 1\necho 2\n# gone\necho 4\n")
    r = farmhand("submit", str(tasks), "--campaign", "legacy", env=env)
    assert r.returncode == 1
    assert "legacy:1 holds records keyed by their line number (e.g. '1')" in r.stderr
    assert "farmhand campaign new legacy" in r.stderr
    assert sorted(rec.key for rec in client.records(campaign_id=old.id)) == ["1", "2", "4"]
    # A new version takes it.
    assert farmhand("campaign", "new", "legacy", env=env).returncode == 0
    r = farmhand("submit", str(tasks), "--campaign", "legacy", env=env)
    assert r.stdout == "submitted 3 records to legacy:2\n", r.stderr
