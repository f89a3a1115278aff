"""Invariant 4: the agent (and the CLI it ships) loads no server code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "uvicorn", "farmhand.server")


@pytest.mark.parametrize(
    "module",
    ["farmhand.agent.cli", "farmhand.agent.loop", "farmhand.agent.client", "farmhand.agent.wire"],
)
def test_agent_modules_load_no_server_code(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert bad == []
    assert module in loaded


def test_agent_help_runs_without_the_server_extra_loaded() -> None:
    code = (
        "import sys, runpy; sys.argv = ['farmhand', 'agent', '--help']\n"
        "try:\n    runpy.run_module('farmhand.agent', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED', [m for m in sys.modules if m.startswith(('fastapi', 'sqlalchemy'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--slots" in out.stdout
    assert "LOADED []" in out.stdout


def test_no_agent_module_imports_server_side_packages() -> None:
    """Also the lazy imports inside functions, which the sys.modules check cannot see."""
    import ast
    from pathlib import Path

    agent_dir = Path(__file__).resolve().parent.parent / "agent"
    offenders = []
    for path in agent_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(FORBIDDEN)]
    assert offenders == []
