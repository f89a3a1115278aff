"""Parents' results in a child's run directory: `parents/<key>/results.json`.

A record with parents starts only once they are all done; its lease carries each parent's
key and result document, and the agent writes them into the run directory before the
command starts, so the command reads its inputs from files like any other.

Keys become directory names through `staging.safe_name` (a plain key stays as it is; any
other gets a sanitised name with a hash), so no key can reach outside `parents/`.
`parents.json` in the run directory lists every parent with its directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from farmhand.agent import wire
from farmhand.agent.staging import RESULTS_FILE, safe_name

__all__ = ["INDEX_FILE", "PARENTS_DIR", "write_parents"]

PARENTS_DIR = "parents"
INDEX_FILE = "parents.json"


def write_parents(run_dir: Path, parents: list[wire.ParentResult]) -> None:
    """Write each parent's result document to `run_dir/parents/<safe key>/results.json`
    (just the directory when the parent left no document) and the index `parents.json`.

    Raises ValueError for a key that would leave `parents/`, OSError when writing fails.
    """
    if not parents:
        return
    root = Path(run_dir) / PARENTS_DIR
    root.mkdir()
    index = []
    for parent in parents:
        name = safe_name(parent.key)
        target = root / name
        if target.resolve().parent != root.resolve():  # defence in depth: safe_name has no '/'
            raise ValueError(f"parent key {parent.key!r} would leave {root}")
        target.mkdir()
        if parent.result is not None:
            (target / RESULTS_FILE).write_text(json.dumps(parent.result), encoding="utf-8")
        index.append(
            {"key": parent.key, "record_id": parent.record_id, "dir": f"{PARENTS_DIR}/{name}"}
        )
    (Path(run_dir) / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
