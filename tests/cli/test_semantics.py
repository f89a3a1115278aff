"""`farmhand campaign new`, `submit --force`, `retry` flags, `ls records` filters and `show`,
as a user types them, against a real server process."""

from __future__ import annotations

import json
from pathlib import Path

from farmhand import wire
from farmhand.client import FarmhandClient
from tests.cli.test_main import farmhand
from tests.conftest import LiveServer


def finish(client: FarmhandClient, campaign_id: int) -> list[int]:
    """Claim every ready record of the campaign as an agent and complete it."""
    agent = client.register(wire.AgentRegister(name="by-hand", host="test", slots=1))
    leases = client.claim(agent.agent.id, wire.MAX_CLAIM, campaign_id=campaign_id)
    for lease in leases:
        client.start(lease.run_id, lease.token)
        client.complete(lease.run_id, wire.RunComplete(token=lease.token, result={"ok": 1}))
    return sorted(lease.record_id for lease in leases)


def test_campaign_new_makes_versions_with_based_on_and_defaults(live_server: LiveServer) -> None:
    env = live_server.client_env()
    r = farmhand("campaign", "new", "relax", "--software", "lammps", env=env)
    assert (r.returncode, r.stdout) == (0, "relax:1\n"), r.stderr
    r = farmhand(
        "campaign",
        "new",
        "relax",
        "--based-on",
        "relax",
        "--default",
        "max_attempts=2",
        "--default",
        'env={"MODE": "fast"}',
        env=env,
    )
    assert (r.returncode, r.stdout) == (0, "relax:2\n"), r.stderr
    second = live_server.client().campaigns(name="relax")[-1]
    assert (second.version, second.based_on, second.software) == (2, "relax:1", None)
    assert second.defaults == {"max_attempts": 2, "env": {"MODE": "fast"}}
    r = farmhand("campaign", "new", "other", "--based-on", "relax:9", env=env)
    assert r.returncode == 1 and r.stderr.startswith("farmhand: error: ")
    assert "relax:9" in r.stderr
    assert [c.name for c in live_server.client().campaigns()] == ["relax", "relax"]


def test_submit_targets_the_latest_version_or_the_one_named(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo one\n")
    for _ in range(2):
        farmhand("campaign", "new", "scan", env=env)
    assert farmhand("submit", str(tasks), "--campaign", "scan", env=env).stdout == (
        "submitted 1 records to scan:2\n"
    )
    assert farmhand("submit", str(tasks), "--campaign", "scan:1", env=env).stdout == (
        "submitted 1 records to scan:1\n"
    )
    r = farmhand("submit", str(tasks), "--campaign", "scan:7", env=env)
    assert r.returncode == 1
    assert "no campaign 'scan:7': 'scan' has version(s) 1, 2" in r.stderr
    r = farmhand("submit", str(tasks), "--campaign", "scan:x", env=env)
    assert r.returncode == 1 and "is not NAME or NAME:VERSION" in r.stderr


def test_a_toml_file_creates_its_campaign_with_based_on(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    farmhand("campaign", "new", "dag", env=env)
    path = tmp_path / "dag.toml"
    path.write_text(
        '[campaign]\nname = "dag2"\nsoftware = "v2"\nbased_on = "dag"\n'
        '[[records]]\nkey = "root"\ncommand = "true"\ndataset = "bulk"\ntags = ["x"]\n'
        '[[records]]\nkey = "leaf"\ncommand = "true"\nparents = ["root"]\npriority = 4\n'
    )
    r = farmhand("submit", str(path), env=env)
    assert r.returncode == 0, r.stderr
    assert (r.stdout, r.stderr) == ("submitted 2 records to dag2:1\n", "created campaign dag2:1\n")
    campaign = live_server.client().campaigns(name="dag2")[0]
    assert (campaign.based_on, campaign.software) == ("dag:1", "v2")
    shown = farmhand("show", "leaf", "--campaign", "dag2", env=env).stdout
    assert "state:        waiting" in shown and "parents:      root" in shown
    assert "priority:     4" in shown
    shown = farmhand("show", "root", "--campaign", "dag2", env=env).stdout
    assert "children:     leaf" in shown and "dataset:      bulk" in shown
    assert "tags:         x" in shown
    # The file's campaign settings shape only a new campaign: changing one says so.
    path.write_text(path.read_text().replace('"v2"', '"v3"'))
    r = farmhand("submit", str(path), env=env)
    assert "note: dag2:1 exists; the file's software apply only to a new version" in r.stderr


def numbered(lines: str) -> str:
    """A campaign file whose records are keyed 1, 2, … (one a line of `lines`)."""
    commands = lines.splitlines()
    return "".join(
        f"[[records]]\nkey = '{n}'\ncommand = '{command}'\n"
        for n, command in enumerate(commands, start=1)
    )


def submitted(
    server: LiveServer, tmp_path: Path, lines: str
) -> tuple[dict[str, str], FarmhandClient, Path, int]:
    """`farmhand submit` records keyed 1, 2, … (`numbered`) to campaign c: (env, client, the
    campaign file, campaign id)."""
    env = server.client_env()
    client = server.client()
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(numbered(lines))
    assert farmhand("submit", str(tasks), "--campaign", "c", env=env).returncode == 0
    return env, client, tasks, client.campaigns(name="c")[0].id


def test_submit_skips_replaces_and_reruns_with_the_flags(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env, client, tasks, campaign_id = submitted(live_server, tmp_path, "echo one\necho two\n")
    done_id = finish(client, campaign_id)[0]
    tasks.write_text(numbered("echo ONE\necho TWO\n"))

    r = farmhand("submit", str(tasks), "--campaign", "c", env=env)
    assert r.stdout == (
        "submitted 0 records to c:1; skipped 2 whose keys already exist\n"
        "2 of the skipped differ from what is stored: 1 (command), 2 (command) "
        "(--force replaces them; done ones with --force-ignores-success too)\n"
    )
    r = farmhand("submit", str(tasks), "--campaign", "c", "--force-ignores-success", env=env)
    assert r.returncode == 1 and "pass --force --force-ignores-success" in r.stderr

    # Every record of the campaign was finished above: --force alone skips done ones.
    r = farmhand("submit", str(tasks), "--campaign", "c", "--force", env=env)
    assert r.stdout == (
        "submitted 0 records to c:1; skipped 2 whose keys already exist\n"
        "2 of the skipped differ from what is stored: 1 (command), 2 (command) "
        "(done: --force --force-ignores-success replaces them)\n"
    )
    r = farmhand(
        "submit", str(tasks), "--campaign", "c", "--force", "--force-ignores-success", env=env
    )
    assert r.stdout == (
        "submitted 0 records to c:1; replaced 2 whose spec changed (queued again): 1, 2\n"
    )
    record = client.record(done_id)
    assert (record.state, record.command, record.result) == ("ready", "echo ONE", None)
    answer = json.loads(farmhand("submit", str(tasks), "--campaign", "c", "--json", env=env).stdout)
    assert (answer["created"], answer["skipped"], answer["campaign"]["name"]) == (0, 2, "c")


def test_retry_flags_temporary_run_args_and_orphans(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env, client, _, campaign_id = submitted(live_server, tmp_path, "false\ntrue\n")

    r = farmhand("retry", "1", "2", "--campaign", "c", env=env)
    assert r.stdout.splitlines() == [
        "re-queued 0 records",
        f"skipped 1 (#{_id(client, campaign_id, '1')}): is ready; re-queue it anyway with --force",
        f"skipped 2 (#{_id(client, campaign_id, '2')}): is ready; re-queue it anyway with --force",
    ]
    r = farmhand(
        "retry",
        "1",
        "--campaign",
        "c",
        "--force",
        "--run-arg",
        "timeout=5",
        "--run-arg",
        'env={"FIX": "1"}',
        env=env,
    )
    assert r.stdout == "re-queued 1 records\n", r.stderr
    record = client.record(_id(client, campaign_id, "1"))
    assert record.temporary_run_args == {"timeout": 5, "env": {"FIX": "1"}}
    assert record.derived_run_args == {"timeout": 5, "env": {"FIX": "1"}}
    shown = farmhand("show", "1", "--campaign", "c", env=env).stdout
    assert 'temporary:    {"timeout": 5, "env": {"FIX": "1"}}  (until it ends again)' in shown

    r = farmhand("retry", env=env)
    assert r.returncode == 1 and "or pass --orphans" in r.stderr
    r = farmhand("retry", "--orphans", "--campaign", "c", "--json", env=env)
    assert json.loads(r.stdout) == {"changed": [], "skipped": [], "reopened": 0, "next": None}


def test_ls_records_filters_by_campaign_state_and_dataset(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.client_env()
    client = live_server.client()
    first = client.create_campaign("a")
    second = client.create_campaign("b")
    spec = wire.RecordSpec
    client.submit(
        first.id,
        [
            spec(key="x1", command="true", dataset="x"),
            spec(key="y1", command="true", dataset="y"),
            spec(key="x2", command="true", dataset="x"),
        ],
    )
    client.submit(second.id, [spec(key="x3", command="true", dataset="x")])
    client.cancel([_id(client, first.id, "x2")])

    def keys(*args: str) -> list[str]:
        r = farmhand("ls", "records", "--json", *args, env=env)
        assert r.returncode == 0, r.stderr
        return [record["key"] for record in json.loads(r.stdout)]

    assert keys("--dataset", "x") == ["x1", "x2", "x3"]
    assert keys("--dataset", "x", "--campaign", "a") == ["x1", "x2"]
    assert keys("--dataset", "x", "--state", "ready") == ["x1", "x3"]
    assert keys("--campaign", "a:1", "--state", "cancelled") == ["x2"]
    assert keys("--dataset", "z") == []
    r = farmhand("ls", "records", "--state", "finished", env=env)
    assert r.returncode == 1 and "no record state 'finished'; use one of waiting" in r.stderr
    r = farmhand("ls", "agents", "--dataset", "x", env=env)
    assert r.returncode == 1 and "--dataset and --where filter records, not agents" in r.stderr


def _id(client: FarmhandClient, campaign_id: int, key: str) -> int:
    (record,) = client.records_page(campaign_id=campaign_id, key=key).items
    return record.id


def test_ls_records_where_params_and_a_limit_that_says_so(live_server: LiveServer) -> None:
    env = live_server.client_env()
    client = live_server.client()
    c = client.create_campaign("eos")
    client.submit(
        c.id,
        [
            wire.RecordSpec(key=f"T{T}", command="true", params={"T": T, "a": 4.05})
            for T in (300, 600, 900)
        ],
    )

    def ls(*args: str) -> tuple[list[str], str]:
        r = farmhand("ls", "records", "--campaign", "eos", "--json", *args, env=env)
        assert r.returncode == 0, r.stderr
        return [record["key"] for record in json.loads(r.stdout)], r.stderr

    assert ls("--where", "T>=600") == (["T600", "T900"], "")
    assert ls("--where", "T>=600", "--where", "a=4.05", "--where", "T!=900")[0] == ["T600"]
    assert ls("--limit", "2") == (["T300", "T600"], "2 of 3 records shown (--limit 0 for all)\n")
    assert ls("--limit", "0")[0] == ["T300", "T600", "T900"]
    r = farmhand("ls", "records", "--campaign", "eos", "--where", "t>=600", env=env)
    assert r.returncode == 1 and "no record of campaign" in r.stderr and "params: T, a" in r.stderr
    r = farmhand("ls", "records", "--where", "T=>600", env=env)
    assert r.returncode == 1 and "filter 'T=>600' is not NAME OP VALUE" in r.stderr
    r = farmhand("ls", "records", "--campaign", "eos", env=env)
    assert "T=300 a=4.05" in r.stdout
    r = farmhand("show", "T600", "--campaign", "eos", env=env)
    assert "params:       T=600 a=4.05" in r.stdout, r.stdout


def test_status_and_ls_runs_for_one_campaign(live_server: LiveServer) -> None:
    env = live_server.client_env()
    client = live_server.client()
    first, second = client.create_campaign("a"), client.create_campaign("b")
    client.submit(first.id, [wire.RecordSpec(key="x", command="true")])
    client.submit(second.id, [wire.RecordSpec(key="y", command="true")])
    finish(client, second.id)
    r = farmhand("status", "--campaign", "b", env=env)
    assert r.returncode == 0 and "b:1" in r.stdout and "a:1" not in r.stdout, r.stdout
    r = farmhand("ls", "runs", "--campaign", "b", "--json", env=env)
    runs = json.loads(r.stdout)
    assert [run["record_id"] for run in runs] == [_id(client, second.id, "y")]
    assert json.loads(farmhand("ls", "runs", "--campaign", "a", "--json", env=env).stdout) == []
    r = farmhand("ls", "agents", "--campaign", "a", env=env)
    assert r.returncode == 1 and "--campaign filters records and runs, not agents" in r.stderr
