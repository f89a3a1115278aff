"""Parents' results written into a child's run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.runtime.files.parents import write_parents
from farmhand.runtime.files.rundirs import safe_name


def parent(key: str, result: object, record_id: int = 1) -> wire.ParentResult:
    return wire.ParentResult(record_id=record_id, key=key, result=result)


def test_each_parent_result_lands_in_its_own_directory(tmp_path: Path) -> None:
    write_parents(
        tmp_path,
        [parent("relax", {"energy": -3.5}, 4), parent("scan-1", [1, 2], 5), parent("empty", None)],
    )
    assert json.loads((tmp_path / "parents/relax/results.json").read_text()) == {"energy": -3.5}
    assert json.loads((tmp_path / "parents/scan-1/results.json").read_text()) == [1, 2]
    assert (tmp_path / "parents/empty").is_dir()
    assert not (tmp_path / "parents/empty/results.json").exists()
    index = json.loads((tmp_path / "parents.json").read_text())
    assert index[:2] == [
        {"key": "relax", "record_id": 4, "dir": "parents/relax"},
        {"key": "scan-1", "record_id": 5, "dir": "parents/scan-1"},
    ]


def test_no_parents_writes_nothing(tmp_path: Path) -> None:
    write_parents(tmp_path, [])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "..", ".", "a/../../b", "-rf", "ü"])
def test_keys_that_are_not_plain_names_stay_inside_parents(tmp_path: Path, key: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_parents(run_dir, [parent(key, {"k": key})])
    (written,) = (run_dir / "parents").iterdir()
    assert written.name == safe_name(key) != key
    assert json.loads((written / "results.json").read_text()) == {"k": key}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert json.loads((run_dir / "parents.json").read_text())[0]["dir"] == f"parents/{written.name}"
