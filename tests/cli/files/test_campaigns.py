"""Parsing tasklists and TOML campaign files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from farmhand.cli.files import campaigns as campaign_file
from farmhand.cli.files.campaigns import CampaignFileError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tasklist_keys_come_from_the_commands_and_comments_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks.txt", "# header\necho a\n\n  echo b  \n#echo c\necho a\n")
    parsed = campaign_file.read(path)
    a, b = (f"t-{hashlib.sha256(c).hexdigest()[:12]}" for c in (b"echo a", b"echo b"))
    assert [(r.key, r.command) for r in parsed.records] == [
        (a, "echo a"),
        (b, "echo b"),
        (f"{a}-2", "echo a"),  # the second copy
    ]
    assert (parsed.name, parsed.form) == (None, "tasklist")
    # Comments, blank lines and order do not move a key.
    path.write_text("echo b\n# new comment\n\necho a\necho a\n")
    assert sorted(r.key for r in campaign_file.read(path).records) == sorted([a, b, f"{a}-2"])


@pytest.mark.parametrize(
    ("name", "text", "form"),
    [
        ("al-md.TOML", "[[records]]\nkey = 'a'\ncommand = 'x'\n", "toml"),
        ("md.Toml", "[[records]]\nkey = 'a'\ncommand = 'x'\n", "toml"),
        ("jobs", "# a campaign\n[campaign]\nname = 'x'\n[[records]]\nkey='a'\ncommand='x'", "toml"),
        ("jobs.txt", "records = [{ key = 'a', command = 'x' }]\n", "toml"),
        ("jobs.txt", "[ -f done ] || ./run.sh\nkey = 'x'\n", "tasklist"),
        ("tasks", "echo [campaign]\n", "tasklist"),
    ],
)
def test_the_format_comes_from_the_name_in_any_case_or_the_content(
    tmp_path: Path, name: str, text: str, form: str
) -> None:
    assert campaign_file.read(write(tmp_path, name, text)).form == form


def test_a_toml_name_that_does_not_parse_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "al-md.TOML", "[campaign]\nname = 'al-md'\n[[records]]\nkey = a\n")
    with pytest.raises(CampaignFileError, match=r"is not valid TOML: .*line 4"):
        campaign_file.read(path)
    # --format tasklist reads it as commands anyway, if that is what is meant.
    assert len(campaign_file.read(path, "tasklist").records) == 4


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n   # comments\n"])
def test_empty_tasklist_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(CampaignFileError, match="holds no records"):
        campaign_file.read(write(tmp_path, "tasks.txt", text))


def test_toml_campaign(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.toml",
        """
[campaign]
name = "relax"
software = "lammps-2023"
[campaign.defaults]
max_attempts = 2
[[records]]
key = "al-fcc-4.05"
command = "python relax.py --a 4.05"
priority = 3
[records.run_args]
walltime = 600
[[records]]
key = "al-fcc-4.10"
command = "python relax.py --a 4.10"
""",
    )
    parsed = campaign_file.read(path)
    assert (parsed.name, parsed.software, parsed.defaults) == (
        "relax",
        "lammps-2023",
        {"max_attempts": 2},
    )
    first, second = parsed.records
    assert (first.key, first.priority, first.run_args) == ("al-fcc-4.05", 3, {"walltime": 600})
    assert (second.key, second.priority, second.run_args) == ("al-fcc-4.10", 0, {})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[campaign\nname='x'", "not valid TOML"),
        ("[[records]]\nkey = 'a'\n", "records[0] ('a'): command: Field required"),
        (
            "[[records]]\nkey='a'\ncommand='x'\n[[records]]\nkey='a'\ncommand='y'\n",
            "key 'a' appears twice",
        ),
        ("[[records]]\nkey='a'\ncommand='x'\ncolour='red'\n", "colour"),
        ("[campaign]\nnam='x'\n[[records]]\nkey='a'\ncommand='x'\n", "unknown key(s): nam"),
        ("[campaign]\nname='x'\n", "holds no records"),
        (
            "[[records]]\nkey='a'\ncommand='x'\nparents=[1.5]\n",
            "records[0] ('a'): parents[0]: 1.5 is neither a record key (text) nor a record id",
        ),
        ("[[records]]\nkey='a'\ncommand='x'\nparents='b'\n", "('a'): parents: Input should be"),
        ("[[records]]\nkey='a'\ncommand='x'\nparents=['a']\n", "'a' lists itself as a parent"),
        (
            "[[records]]\nkey='a'\ncommand='x'\nparents=['b']\n"
            "[[records]]\nkey='b'\ncommand='x'\nparents=['a']\n",
            "the parents form a cycle through records 'a', 'b'",
        ),
        (
            "[[records]]\nkey='a'\ncommand='x'\ndataset='my set'\n",
            "('a'): dataset: 'my set' must be letters, digits and ._-",
        ),
        ("[[records]]\nkey='a'\ncommand='x'\ntags=['ok', 'not ok']\n", "tag 'not ok' must be"),
        ("[[records]]\nkey='a'\ncommand='x'\npriority='high'\n", "('a'): priority:"),
        ("[campaign]\nbased_on=3\n[[records]]\nkey='a'\ncommand='x'\n", "based_on must be"),
    ],
)
def test_bad_toml_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(CampaignFileError) as info:
        campaign_file.read(write(tmp_path, "c.toml", text))
    assert needle in str(info.value)
    assert "c.toml" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignFileError, match="cannot read"):
        campaign_file.read(tmp_path / "nope.txt")


def test_toml_parents_dataset_tags_and_based_on(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dag.toml",
        """
[campaign]
name = "dag"
software = "v2"
based_on = "dag:1"
[[records]]
key = "child"
command = "cat parents/root/results.json"
parents = ["root", 17]
dataset = "bulk"
tags = ["fcc", "al"]
priority = 5
[[records]]
key = "root"
command = "true"
""",
    )
    parsed = campaign_file.read(path)
    assert (parsed.name, parsed.software, parsed.based_on) == ("dag", "v2", "dag:1")
    child, root = parsed.records
    assert child.parents == ["root", 17]
    assert (child.dataset, child.tags, child.priority) == ("bulk", ["al", "fcc"], 5)
    assert (root.parents, root.dataset, root.tags) == ([], None, [])


def test_sweep_tables_expand_after_the_records(tmp_path: Path) -> None:
    (tmp_path / "in.lmp").write_text("units metal\n")
    (tmp_path / "Al.eam").write_text("Al\n")
    path = write(
        tmp_path,
        "md.toml",
        """
[campaign]
name = "md"
inputs = ["Al.eam"]
[[records]]
key = "relax-{a}"
command = "python relax.py --a {a}"
params = { a = 4.05 }
[[sweep]]
key = "a{a}-T{T}"
command = "lmp -var T {T} -var a {a} -in in.lmp"
params = { a = [4.0, 4.05], T = [300, 600] }
inputs = ["in.lmp"]
priority = 2
dataset = "md"
tags = ["al"]
parents = ["relax-4.05"]
[sweep.run_args]
walltime = 600
[[sweep]]
command = "echo {x} {y}"
params = { x = [1, 2], y = ["p", "q"] }
zip = true
""",
    )
    parsed = campaign_file.read(path)
    assert [(r.key, r.command, r.params) for r in parsed.records] == [
        ("relax-4.05", "python relax.py --a 4.05", {"a": 4.05}),
        ("a4.0-T300", "lmp -var T 300 -var a 4.0 -in in.lmp", {"T": 300, "a": 4.0}),
        ("a4.0-T600", "lmp -var T 600 -var a 4.0 -in in.lmp", {"T": 600, "a": 4.0}),
        ("a4.05-T300", "lmp -var T 300 -var a 4.05 -in in.lmp", {"T": 300, "a": 4.05}),
        ("a4.05-T600", "lmp -var T 600 -var a 4.05 -in in.lmp", {"T": 600, "a": 4.05}),
        ("x=1,y=p", "echo 1 p", {"x": 1, "y": "p"}),
        ("x=2,y=q", "echo 2 q", {"x": 2, "y": "q"}),
    ]
    swept = parsed.records[1]
    assert (swept.priority, swept.dataset, swept.tags) == (2, "md", ["al"])
    assert (swept.run_args, swept.parents) == ({"walltime": 600}, ["relax-4.05"])
    assert parsed.records[-1].priority == 0
    assert set(parsed.inputs["a4.0-T300"]) == {"Al.eam", "in.lmp"}
    assert set(parsed.inputs["relax-4.05"]) == {"Al.eam"}
    assert set(parsed.inputs["x=1,y=p"]) == {"Al.eam"}


def test_braces_without_params_are_not_templates(tmp_path: Path) -> None:
    commands = [
        "awk '{print $1}' out.txt",
        """echo '{"a": {"b": 1}}' > in.json""",
        r"find . -exec gzip {} \;",
        "echo {T} {{T}} ${HOME}",
    ]
    body = "".join(
        f"[[records]]\nkey = 'r{n}-{{x}}'\ncommand = '''{command}'''\n"
        for n, command in enumerate(commands)
    )
    parsed = campaign_file.read(write(tmp_path, "c.toml", body))
    assert [(r.key, r.command) for r in parsed.records] == [
        (f"r{n}-{{x}}", command) for n, command in enumerate(commands)
    ]
    tasks = campaign_file.read(write(tmp_path, "tasks.txt", "\n".join(commands) + "\n"))
    assert [r.command for r in tasks.records] == commands


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "[[sweep]]\ncommand='lmp -var T {T} -var a {b}'\nparams={T=[1, 2]}\n",
            "sweep 1 (command 'lmp -var T {T} -var a {b}'): placeholder {b} is not a param "
            "(params: T)",
        ),
        (
            "[[sweep]]\ncommand='echo {T}'\nparams={T=[1]}\nkey='k{x}'\n",
            "sweep 1 (command 'echo {T}'): placeholder {x}",
        ),
        (
            "[[sweep]]\ncommand='echo {a} {T}'\nparams={a=[1, 2, 3], T=[1, 2]}\nzip=true\n",
            "sweep 1 (command 'echo {a} {T}'): zip needs lists of one length, not a: 3, T: 2",
        ),
        ("[[sweep]]\ncommand='echo {T}'\nparams={T=[]}\n", "sweep 1 (command 'echo {T}'): param"),
        ("[[sweep]]\ncommand='echo {T}'\nparams={T=[[1]]}\n", "must be a string, number or"),
        ("[[sweep]]\ncommand='echo {T}'\nparams={T=[{x=1}]}\n", "must be a string, number or"),
        ("[[sweep]]\ncommand='echo'\nparams={}\n", "sweep 1 (command 'echo'): params: a sweep"),
        ("[[sweep]]\ncommand='echo {T}'\n", "params: a sweep needs a table of lists"),
        ("[[sweep]]\nparams={T=[1]}\n", "sweep 1: command: a sweep needs a command"),
        ("[[sweep]]\ncommand='echo {T}'\nparams={T=[1]}\nzip='yes'\n", "zip must be true or"),
        ("[[sweep]]\ncommand='echo {T}'\nparams={T=[1]}\ncolour=1\n", "unknown key(s): colour"),
        ("[[sweep]]\ncommand='echo {T}'\nparams={T=[1]}\npriority='x'\n", "): priority:"),
        ("sweep = 3\n", "sweep must be an array of tables"),
        (
            "[[sweep]]\ncommand='echo {a} {T}'\nparams={a=[1, 2], T=[1]}\nkey='T{T}'\n",
            "sweep 1 (command 'echo {a} {T}'): key 'T1' comes from both T=1,a=1 and T=1,a=2",
        ),
        (
            "[[records]]\nkey='T=1'\ncommand='x'\n[[sweep]]\ncommand='echo {T}'\nparams={T=[1]}\n",
            "key 'T=1' appears twice (records[0] and sweep 1 (command 'echo {T}'))",
        ),
        (
            "[[sweep]]\ncommand='a {T}'\nparams={T=[1, 2]}\n"
            "[[sweep]]\ncommand='b {T}'\nparams={T=[2, 3]}\n",
            "key 'T=2' appears twice (sweep 1 (command 'a {T}') and sweep 2 (command 'b {T}'))",
        ),
        (
            "[[sweep]]\ncommand='" + "x" * 50 + " {T}'\nparams={T=[1]}\ncolour=1\n",
            "sweep 1 (command '" + "x" * 40 + "…')",
        ),
        (
            "[[records]]\nkey='a-{T}'\ncommand='echo {T} {a}'\nparams={T=1}\n",
            "records[0] ('a-{T}'): placeholder {a} is not a param (params: T)",
        ),
        (
            "[[records]]\nkey='a'\ncommand='echo {T}'\nparams={T=[1, 2]}\n",
            "records[0] ('a'): params: T is a list; a record takes one value per param",
        ),
    ],
)
def test_bad_sweep_names_the_sweep_and_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(CampaignFileError) as info:
        campaign_file.read(write(tmp_path, "c.toml", text))
    assert needle in str(info.value)
    assert str(info.value).startswith(f"{tmp_path / 'c.toml'}: ")
    assert "\n" not in str(info.value)
