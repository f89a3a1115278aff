"""Parsing tasklists and TOML campaign files."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand.cli.files import campaigns as campaign_file
from farmhand.cli.files.campaigns import CampaignFileError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tasklist_keys_are_line_numbers_and_comments_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks.txt", "# header\necho a\n\n  echo b  \n#echo c\necho d\n")
    parsed = campaign_file.read(path)
    assert [(r.key, r.command) for r in parsed.records] == [
        ("2", "echo a"),
        ("4", "echo b"),
        ("6", "echo d"),
    ]
    assert parsed.name is None


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
