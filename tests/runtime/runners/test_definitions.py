"""runners.d: reading definitions, and the errors that stop an agent at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from farmhand.runtime.runners.container import ContainerRunner
from farmhand.runtime.runners.definitions import DefinitionError, load, user_runners_dir
from farmhand.runtime.runners.subprocess import SubprocessRunner

FARMHAND = [sys.executable, "-m", "farmhand"]

ISSUE_EXAMPLE = """
[runners.lammps]
kind = "container"
engine = "apptainer"
image = "/sw/images/lammps.sif"
setup = "source /opt/env.sh"
binds = ["/scratch"]
env = { OMP_PROC_BIND = "true" }

[runners.native]
kind = "subprocess"
setup = ["module load gromacs", "export X=1"]
env = { N = 3, FLAG = true }

[runners.sh-container]
kind = "container"
engine = "podman"
executable = "sh"
image = "alpine"
network = "none"
init = false
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture
def no_user_dir(tmp_path: Path) -> Path:
    """A user config directory that does not exist, so the real ~/.config cannot leak in."""
    return tmp_path / "no-config"


def test_several_runners_per_file(tmp_path: Path, no_user_dir: Path) -> None:
    write(tmp_path / "d", "site.toml", ISSUE_EXAMPLE)
    runners = load([tmp_path / "d"], user_dir=no_user_dir)
    assert sorted(runners.entries) == ["lammps", "native", "sh-container", "subprocess"]
    lammps = runners.entries["lammps"]
    assert (lammps.kind, lammps.engine) == ("container", "apptainer")
    assert lammps.image == "/sw/images/lammps.sif"
    assert isinstance(lammps.runner, ContainerRunner)
    assert lammps.runner.setup == ("source /opt/env.sh",)
    assert lammps.runner.binds == ("/scratch",)
    assert lammps.runner.env == {"OMP_PROC_BIND": "true"}
    native = runners.entries["native"].runner
    assert isinstance(native, SubprocessRunner)
    assert native.setup == ("module load gromacs", "export X=1")
    assert native.env == {"N": "3", "FLAG": "true"}
    # No apptainer on this machine: listed, not offered. `sh` stands in for an engine.
    assert lammps.problem == "apptainer not found on PATH"
    assert runners.get("lammps") is None
    assert runners.offered() == ["native", "sh-container", "subprocess"]
    assert lammps.row()["status"] == "not offered: apptainer not found on PATH"


def test_later_directories_win_and_the_user_dir_comes_first(tmp_path: Path) -> None:
    user = tmp_path / "config" / "farmhand" / "runners.d"
    write(user, "a.toml", '[runners.x]\nkind = "subprocess"\nsetup = "echo user"\n')
    write(tmp_path / "job", "b.toml", '[runners.x]\nkind = "subprocess"\nsetup = "echo job"\n')
    assert user_runners_dir({"XDG_CONFIG_HOME": str(tmp_path / "config")}) == user
    assert user_runners_dir({"HOME": "/home/u"}) == Path("/home/u/.config/farmhand/runners.d")
    only_user = load([], user_dir=user).entries["x"]
    assert only_user.runner.setup == ("echo user",)  # type: ignore[attr-defined]
    both = load([tmp_path / "job"], user_dir=user).entries["x"]
    assert both.runner.setup == ("echo job",)  # type: ignore[attr-defined]
    assert both.source == str(tmp_path / "job" / "b.toml")


def test_files_that_are_not_toml_are_ignored(tmp_path: Path, no_user_dir: Path) -> None:
    write(tmp_path / "d", "README", "not a definition")
    assert list(load([tmp_path / "d"], user_dir=no_user_dir).entries) == ["subprocess"]


def test_a_python_runner_of_your_own(tmp_path: Path, no_user_dir: Path) -> None:
    text = (
        '[runners.mine]\nkind = "python"\n'
        'class = "farmhand.runtime.runners.subprocess:SubprocessRunner"\n'
        'options = { setup = ["echo mine"] }\n'
    )
    write(tmp_path / "d", "mine.toml", text)
    entry = load([tmp_path / "d"], user_dir=no_user_dir).entries["mine"]
    assert isinstance(entry.runner, SubprocessRunner)
    assert (entry.runner.name, entry.runner.setup) == ("mine", ("echo mine",))


BAD = [
    ("[runners.x\n", "a.toml: not valid TOML: "),
    ('[runners.lammps]\nkind = "container"\nengine = "apptaner"\n',
     "a.toml: runner 'lammps': engine: Input should be 'podman', 'docker', 'apptainer', "
     "'singularity', 'shifter' or 'podman-hpc'"),
    ('[runners.lammps]\nkind = "vm"\n',
     "a.toml: runner 'lammps': kind must be 'subprocess', 'container' or 'python', not 'vm'"),
    ('[runners.lammps]\nengine = "podman"\n',
     "a.toml: runner 'lammps': kind is missing: set kind = 'subprocess', 'container' or 'python'"),
    ('[runners.lammps]\nkind = "container"\nengine = "podman"\nimgae = "x"\n',
     "a.toml: runner 'lammps': unknown key 'imgae'"),
    ('[runners.lammps]\nkind = "container"\nengine = "podman"\nbinds = ["scratch"]\n',
     "a.toml: runner 'lammps': binds: bind 'scratch' is not SRC, SRC:DST or SRC:DST:OPTIONS "
     "with absolute paths"),
    ('[runners.lammps]\nkind = "container"\nengine = "shifter"\nnetwork = "none"\n',
     "a.toml: runner 'lammps': engine 'shifter' takes no `network`; use `options`"),
    ('[runners.lammps]\nkind = "subprocess"\nsetup = ""\n',
     "a.toml: runner 'lammps': setup: setup lines must not be blank"),
    ('[runners.lammps]\nkind = "subprocess"\nenv = "A=1"\n',
     "a.toml: runner 'lammps': env: Input should be a valid dictionary"),
    ('[runners."two words"]\nkind = "subprocess"\n',
     "a.toml: runner name 'two words' must match"),
    ('[runners.subprocess]\nkind = "subprocess"\n',
     "a.toml: runner 'subprocess' is built in; choose another name"),
    ('[runner.lammps]\nkind = "subprocess"\n',
     "a.toml: unknown top-level key 'runner' (runners go under [runners.NAME])"),
    ("[runners]\nlammps = 1\n", "a.toml: runner 'lammps': must be a table: [runners.lammps]"),
    ('[runners.p]\nkind = "python"\nclass = "os:nope"\n',
     "a.toml: runner 'p': cannot load class 'os:nope'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD)
def test_invalid_definitions_name_file_runner_and_problem(
    tmp_path: Path, no_user_dir: Path, text: str, message: str
) -> None:
    write(tmp_path / "d", "a.toml", text)
    with pytest.raises(DefinitionError) as caught:
        load([tmp_path / "d"], user_dir=no_user_dir)
    assert str(caught.value).startswith(f"{tmp_path / 'd'}/" + message)


def test_one_name_twice_in_one_directory(tmp_path: Path, no_user_dir: Path) -> None:
    write(tmp_path / "d", "a.toml", '[runners.x]\nkind = "subprocess"\n')
    write(tmp_path / "d", "b.toml", '[runners.x]\nkind = "subprocess"\n')
    with pytest.raises(DefinitionError, match=r"b.toml: runner 'x' is already defined in .*a.toml"):
        load([tmp_path / "d"], user_dir=no_user_dir)


def test_a_missing_runners_dir(tmp_path: Path, no_user_dir: Path) -> None:
    with pytest.raises(DefinitionError, match=r"runners directory .*/nowhere does not exist"):
        load([tmp_path / "nowhere"], user_dir=no_user_dir)


def agent_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("FARMHAND_SERVER", None)  # --list-runners needs no server
    return subprocess.run(
        [*FARMHAND, "agent", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_list_runners_prints_runners_and_resources(tmp_path: Path) -> None:
    write(tmp_path / "d", "site.toml", ISSUE_EXAMPLE)
    shown = agent_cli(
        "--list-runners", "--runners-dir", str(tmp_path / "d"), "--gpus", "0,1", "--cores", "4",
        "--memory", "8G", tmp_path=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "ENGINE", "IMAGE", "STATUS", "SOURCE"]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert rows["subprocess"] == ["subprocess", "subprocess", "-", "-", "offered", "built", "in"]
    assert rows["lammps"][:5] == [
        "lammps",
        "container",
        "apptainer",
        "/sw/images/lammps.sif",
        "not",
    ]
    assert "apptainer not found on PATH" in " ".join(rows["lammps"])
    assert rows["sh-container"][1:5] == ["container", "podman", "alpine", "offered"]
    assert lines[-1] == (
        "resources: 4 cores (--cores), 2 GPUs [0,1] (--gpus), 8192 MiB memory (--memory)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "many"], "--gpus takes a count or a list of device ids like '0,2', not 'many'"),
        (["--memory", "lots"], "--memory must be MiB or a size like '4G', not 'lots'"),
        (["--cores", "-1"], "--cores must be positive, not -1"),
    ],
)
def test_bad_resource_flags_stop_the_agent(tmp_path: Path, args: list[str], message: str) -> None:
    shown = agent_cli("--list-runners", *args, tmp_path=tmp_path)
    assert shown.returncode == 1
    assert shown.stderr.strip() == f"farmhand: error: {message}"


def test_an_invalid_definition_stops_the_agent_before_it_contacts_a_server(
    tmp_path: Path,
) -> None:
    write(tmp_path / "d", "bad.toml", '[runners.lammps]\nkind = "container"\nengine = "lxc"\n')
    shown = agent_cli(
        "--server", "http://127.0.0.1:9", "--runners-dir", str(tmp_path / "d"), tmp_path=tmp_path
    )
    assert shown.returncode == 1
    assert shown.stderr.startswith(
        f"farmhand: error: {tmp_path / 'd' / 'bad.toml'}: runner 'lammps': engine: "
    )
