"""The layers, both ways: wire <- client <- runtime <- cli on the agent side; the server
imports only the wire contract from it (invariant 4: the agent side loads no server code).

Checked twice: in the source (every import, also the lazy ones inside functions), and in a
fresh interpreter (what importing a module really loads)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_SIDE = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "uvicorn", "alembic")
#: What each agent-side layer may import of farmhand (besides the package root).
MAY_IMPORT = {
    "wire": {"wire"},
    "client": {"wire", "client"},
    "runtime": {"wire", "client", "runtime"},
    "cli": {"wire", "client", "runtime", "cli"},
}


def imports_of(path: Path) -> list[str]:
    """Every module `path` imports, as dotted names (`from a import b` gives a.b and a)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def layer_of(name: str) -> str | None:
    """The layer a farmhand module belongs to (None for the root and non-farmhand names)."""
    parts = name.split(".")
    if parts[0] != "farmhand" or len(parts) < 2:
        return None
    return "server" if parts[1] == "server" else parts[1] if parts[1] in MAY_IMPORT else None


def agent_side_modules() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(ROOT / "agent").parts[0], path)
        for path in sorted((ROOT / "agent").rglob("*.py"))
        if path.relative_to(ROOT / "agent").parts[0] in MAY_IMPORT
    ]


def test_every_agent_side_folder_is_a_known_layer() -> None:
    folders = {p.name for p in (ROOT / "agent").iterdir() if (p / "__init__.py").exists()}
    assert folders == set(MAY_IMPORT)


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_agent_side_layer_imports_only_the_layers_below_it(layer: str) -> None:
    offenders = []
    for own, path in agent_side_modules():
        if own != layer:
            continue
        for name in imports_of(path):
            other = layer_of(name)
            bad = name.startswith(SERVER_SIDE) or (
                other is not None and other not in MAY_IMPORT[layer]
            )
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_the_server_imports_only_the_wire_contract_of_the_agent_side() -> None:
    offenders = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        for name in imports_of(path):
            if layer_of(name) in ("client", "runtime", "cli"):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def loaded_by(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    assert module in loaded
    return loaded


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("farmhand.wire", "wire"),
        ("farmhand.client", "client"),
        ("farmhand.runtime.agent", "runtime"),
        ("farmhand.cli.main", "cli"),
    ],
)
def test_importing_a_layer_loads_nothing_above_it_and_no_server_code(
    module: str, layer: str
) -> None:
    loaded = loaded_by(module)
    above = [m for m in loaded if layer_of(m) not in (None, *MAY_IMPORT[layer])]
    assert above == []
    assert [m for m in loaded if m.startswith(SERVER_SIDE)] == []


def test_the_server_loads_only_the_wire_contract_of_the_agent_side() -> None:
    loaded = loaded_by("farmhand.server.app")
    assert [m for m in loaded if layer_of(m) in ("client", "runtime", "cli")] == []


def test_import_farmhand_is_light_and_gives_the_client_and_the_wire() -> None:
    code = (
        "import json, sys, farmhand\n"
        "light = sorted(m for m in sys.modules if m.startswith('farmhand'))\n"
        "print(json.dumps([light, farmhand.Client.__name__, farmhand.wire.API_PREFIX]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    light, client, prefix = json.loads(out.stdout)
    assert light == ["farmhand"]  # the rest is loaded on first use
    assert (client, prefix) == ("FarmhandClient", "/api/v1")


def test_agent_help_runs_without_the_server_extra_loaded() -> None:
    code = (
        "import sys, runpy; sys.argv = ['farmhand', 'agent', '--help']\n"
        "try:\n    runpy.run_module('farmhand', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED', [m for m in sys.modules if m.startswith(('fastapi', 'sqlalchemy'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--slots" in out.stdout
    assert "LOADED []" in out.stdout
