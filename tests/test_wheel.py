"""The distribution: a wheel built with `pip wheel .` and installed in a fresh virtualenv holds
every package of the repository (the folders with an __init__.py, agent/ as `farmhand` and
server/ as `farmhand.server`) and imports every module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: What a checkout holds besides its source.
NOT_SOURCE = (
    ".git",
    ".venv",
    "build",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "artifacts",
)
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import farmhand
names, failed = [], {}
for info in pkgutil.walk_packages(farmhand.__path__, "farmhand."):
    if info.name == "farmhand.server.migrations.env":  # run by Alembic, not imported
        continue
    names.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = repr(exc)
print(json.dumps({"names": names, "failed": failed, "file": farmhand.__file__}))
"""


def repository_packages() -> set[str]:
    found = set()
    for top, name in (("agent", "farmhand"), ("server", "farmhand.server")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    return found


def repository_modules() -> set[str]:
    found = set()
    for top, name in (("agent", "farmhand"), ("server", "farmhand.server")):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT / top).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found.add(".".join((name, *parts)))
    return found


def test_the_wheel_holds_every_package_and_imports_every_module(tmp_path: Path) -> None:
    # From a copy: setuptools keeps a build/ directory in the tree it builds, and a stale
    # one (modules since moved) would end up in the wheel.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("farmhand-*.whl")
    in_wheel = {
        str(Path(n).parent).replace("/", ".")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.endswith("/__init__.py")
    }
    assert in_wheel == repository_packages()

    # A fresh virtualenv with the wheel; its dependencies come from this one's site-packages
    # (a path entry, so this environment's editable farmhand is not seen there).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run(
        [str(python), "-c", IMPORT_ALL], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["file"].startswith(site)  # the installed wheel, not this checkout
    assert answer["failed"] == {}
    # Every module of the repository is in the wheel and imports (but Alembic's env.py).
    assert set(answer["names"]) == repository_modules() - {
        "farmhand",
        "farmhand.server.migrations.env",
    }
    # `farmhand autoscale` finds its batch scripts where the wheel installed them.
    found = subprocess.run(
        [
            str(python),
            "-c",
            "from farmhand.cli.autoscale import default_script as d; "
            "print(d('slurm')); print(d('pbs'))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    share = venv / "share" / "farmhand"
    assert found.stdout.split() == [
        str(share / "farmhand-agent.sbatch"),
        str(share / "farmhand-agent.pbs"),
    ]
