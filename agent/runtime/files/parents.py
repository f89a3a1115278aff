"""Parents' results in a child's run directory: `parents/<key>/results.json`.

A record with parents starts only once they are all done; its lease carries each parent's
key and result document, and the agent writes them into the run directory before the
command starts, so the command reads its inputs from files like any other.

Keys become directory names through `staging.safe_name` (a plain key stays as it is; any
other gets a sanitised name with a hash), so no key can reach outside `parents/`.
`parents.json` in the run directory lists every parent with its directory.

With run_args `unpack_parents = true`, each parent's output archive (the run directory its
successful run left) is unpacked into the same `parents/<key>/` as well, through the
agent's snapshot cache and `extract.safe_extract`.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from farmhand import wire
from farmhand.runtime.files.cache import InputError, SnapshotCache
from farmhand.runtime.files.extract import ArchiveError, safe_extract
from farmhand.runtime.files.rundirs import RESULTS_FILE, safe_name

__all__ = ["INDEX_FILE", "PARENTS_DIR", "unpack_parents", "wants_unpacked", "write_parents"]

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


def wants_unpacked(run_args: dict[str, Any]) -> bool:
    """`run_args.unpack_parents`: whether parents' archives go under `parents/<key>/`."""
    value = run_args.get("unpack_parents", False)
    if not isinstance(value, bool):
        raise ValueError(f"run_args.unpack_parents must be true or false, not {value!r}")
    return value


def unpack_parents(
    run_dir: Path,
    parents: list[wire.ParentResult],
    cache: SnapshotCache,
    *,
    max_bytes: int,
    max_files: int,
) -> int:
    """Unpack each parent's archive into `run_dir/parents/<safe key>/` (after
    `write_parents`); how many were unpacked. A parent without an archive is skipped.

    Raises InputError when an archive cannot be fetched or is refused.
    """
    unpacked = 0
    for parent in parents:
        if parent.archive is None:
            continue
        target = Path(run_dir) / PARENTS_DIR / safe_name(parent.key)
        with ExitStack() as stack:
            try:
                source = stack.enter_context(cache.held(parent.archive))  # kept until unpacked
            except InputError as exc:
                raise InputError(f"the archive of parent {parent.key!r}: {exc}") from None
            try:
                safe_extract(source, target, max_bytes=max_bytes, max_files=max_files)
            except ArchiveError as exc:
                raise InputError(f"the archive of parent {parent.key!r}: {exc}") from None
            except OSError as exc:
                raise InputError(
                    f"the archive of parent {parent.key!r} cannot be unpacked: "
                    f"{exc.strerror or exc}"
                ) from None
        unpacked += 1
    return unpacked
