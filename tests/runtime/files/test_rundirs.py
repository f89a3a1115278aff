"""Run directories, output tails and results.json, on real files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from farmhand import wire
from farmhand.runtime.files import rundirs as staging
from farmhand.runtime.files.rundirs import (
    make_run_dir,
    read_results,
    read_tail,
    remove_run_dir,
    safe_name,
)

AWKWARD_KEYS = [
    "relax-017",
    "a/b",
    "a_b",
    "a?b",
    "../../etc/passwd",
    "..",
    ".",
    ".hidden",
    "-rf",
    "with space",
    "日本語",
    "é",
    "e\u0301",
    "x" * 256,
    "x" * 255 + "y",
    "tab\tnew\nline",
    "a~b",
    "a_b~0123456789abcdef",
]


def test_run_dir_layout(tmp_path: Path) -> None:
    path = make_run_dir(tmp_path, 7, "relax-017", 42)
    assert path == (tmp_path / "runs" / "7" / "relax-017" / "42").resolve()
    assert path.is_dir()
    assert list(path.iterdir()) == []


def test_run_dir_must_be_fresh(tmp_path: Path) -> None:
    make_run_dir(tmp_path, 1, "k", 5)
    with pytest.raises(FileExistsError):
        make_run_dir(tmp_path, 1, "k", 5)
    assert make_run_dir(tmp_path, 1, "k", 6).name == "6"  # another run of the same record


def test_awkward_keys_get_distinct_readable_names_inside_the_workdir(tmp_path: Path) -> None:
    runs = (tmp_path / "runs" / "1").resolve()
    names = set()
    for run_id, key in enumerate(AWKWARD_KEYS):
        path = make_run_dir(tmp_path, 1, key, run_id)
        assert path.parent.parent == runs  # one level per key: nothing escapes or nests
        name = path.parent.name
        assert "/" not in name and not name.startswith((".", "-"))
        assert len(name.encode()) <= 255
        names.add(name)
    assert len(names) == len(AWKWARD_KEYS)
    assert safe_name("relax-017") == "relax-017"  # plain keys are kept as they are
    assert safe_name("a/b").startswith("a_b~")
    assert safe_name("with space").startswith("with_space~")
    assert safe_name("a/b") != safe_name("a?b")


def test_run_dir_rejects_bad_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run_id"):
        make_run_dir(tmp_path, 1, "k", -1)
    with pytest.raises(ValueError, match="campaign_id"):
        make_run_dir(tmp_path, "../x", "k", 1)  # type: ignore[arg-type]


def test_read_tail_missing_and_small(tmp_path: Path) -> None:
    assert read_tail(tmp_path / "missing.txt") == ""
    (tmp_path / "out.txt").write_text("hello\n")
    assert read_tail(tmp_path / "out.txt") == "hello\n"


def test_read_tail_keeps_the_end(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_bytes(b"a" * 1000 + b"THE END")
    assert read_tail(path, max_bytes=10) == "aaaTHE END"


def test_read_tail_drops_a_character_cut_by_the_window(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("é" * 1000, encoding="utf-8")  # two bytes each
    tail = read_tail(path, max_bytes=101)
    assert tail == "é" * 50


def test_read_tail_never_exceeds_the_wire_cap(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    junk = bytes(range(256)) * 200 + "🦀".encode() * 5000  # invalid bytes and 4-byte chars
    path.write_bytes(junk)
    tail = read_tail(path)
    assert 0 < len(tail) <= wire.MAX_TAIL_BYTES
    wire.RunComplete(token="t", stdout_tail=tail)  # the wire model accepts it
    binary = tmp_path / "binary.out"
    binary.write_bytes(bytes(range(256)) * 200)
    tail = read_tail(binary)
    assert len(tail) <= wire.MAX_TAIL_BYTES
    assert "\x00" not in tail and "\ufffd" in tail


def write_results(run_dir: Path, content: str | bytes) -> None:
    path = run_dir / "results.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def test_read_results_absent_object_and_array(tmp_path: Path) -> None:
    assert read_results(tmp_path) == (None, None)
    write_results(tmp_path, '{"energy": -1.5, "ok": true}')
    assert read_results(tmp_path) == ({"energy": -1.5, "ok": True}, None)
    write_results(tmp_path, "[1, 2, 3]")
    assert read_results(tmp_path) == ([1, 2, 3], None)


@pytest.mark.parametrize("content", ["{x", "", '{"a": 1} trailing', b"\xff\xfe{}", '{"a": NaN}'])
def test_read_results_invalid_json(tmp_path: Path, content: str | bytes) -> None:
    write_results(tmp_path, content)
    document, error = read_results(tmp_path)
    assert document is None
    assert error is not None and error.startswith("results.json is not valid JSON: ")


@pytest.mark.parametrize("content", ["3", '"done"', "null", "true"])
def test_read_results_scalar(tmp_path: Path, content: str) -> None:
    write_results(tmp_path, content)
    assert read_results(tmp_path) == (None, "results.json must hold a JSON object or array")


def test_read_results_too_big(tmp_path: Path) -> None:
    with open(tmp_path / "results.json", "wb") as handle:
        handle.truncate(staging.MAX_RESULTS_BYTES + 1)  # sparse: costs no disk
    document, error = read_results(tmp_path)
    assert document is None
    assert error is not None and str(staging.MAX_RESULTS_BYTES + 1) in error
    assert "16 MiB" in error


def test_read_results_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "results.json").mkdir()
    assert read_results(tmp_path) == (None, "results.json is not a regular file")


def test_read_results_deeply_nested(tmp_path: Path) -> None:
    write_results(tmp_path, "[" * 100_000 + "]" * 100_000)
    document, error = read_results(tmp_path)
    assert document is None and error is not None
    assert error.startswith("results.json is not valid JSON")


def test_remove_run_dir_with_read_only_contents(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, 1, "k", 1)
    (run_dir / "sub").mkdir()
    (run_dir / "sub" / "file").write_text("x")
    os.chmod(run_dir / "sub" / "file", stat.S_IRUSR)
    os.chmod(run_dir / "sub", stat.S_IRUSR | stat.S_IXUSR)
    remove_run_dir(run_dir)
    assert not run_dir.exists()
    remove_run_dir(run_dir)  # already gone: fine


def test_remove_run_dir_never_follows_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    flat = make_run_dir(tmp_path, 1, "flat", 1)  # files and links only: the short way
    (flat / "stdout.txt").write_text("out")
    (flat / "to-dir").symlink_to(outside)
    (flat / "to-file").symlink_to(outside / "keep.txt")
    deep = make_run_dir(tmp_path, 1, "deep", 2)  # a directory inside: rmtree's way
    (deep / "sub").mkdir()
    (deep / "sub" / "to-dir").symlink_to(outside)
    (deep / "to-file").symlink_to(outside / "keep.txt")
    for run_dir in (flat, deep):
        remove_run_dir(run_dir)
        assert not run_dir.exists() and not run_dir.parent.exists()
    assert (outside / "keep.txt").read_text() == "mine"


def test_the_key_directory_goes_with_its_last_run(tmp_path: Path) -> None:
    first, second = make_run_dir(tmp_path, 1, "k", 1), make_run_dir(tmp_path, 1, "k", 2)
    remove_run_dir(first)
    assert not first.exists() and second.parent.is_dir()  # another run is still there
    remove_run_dir(second)
    assert not second.parent.exists()  # no empty directory per record left on the node
    assert second.parent.parent.is_dir()  # the campaign's stays
    assert make_run_dir(tmp_path, 1, "k", 3).is_dir()  # and a later run makes it again


def test_a_key_directory_removed_while_it_is_made_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mkdir finds the key's directory there, and the cleanup of the record's earlier run
    removes it before pathlib looks (seen in CI: a retry orphaned as unstageable)."""
    key_dir = tmp_path / "runs" / "7" / "k"
    key_dir.parent.mkdir(parents=True)  # the campaign's, made by an earlier record
    real_mkdir, raced = os.mkdir, []

    def racing_mkdir(path, mode=0o777):
        if os.fspath(path) == os.fspath(key_dir) and not raced:
            raced.append(True)
            real_mkdir(path, mode)
            os.rmdir(path)  # the other thread's removal, just after our EEXIST
            raise FileExistsError(17, "File exists", os.fspath(path))
        return real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    run_dir = make_run_dir(tmp_path, 7, "k", 1)
    assert raced and run_dir.is_dir() and run_dir.parent == key_dir
    # A file where the key's directory belongs still fails, naming it.
    (tmp_path / "runs" / "7" / "f").write_text("")
    with pytest.raises(FileExistsError):
        make_run_dir(tmp_path, 7, "f", 2)


def test_results_document_round_trips_through_the_wire(tmp_path: Path) -> None:
    document = {"key": "k", "values": [1.0, 2.5], "nested": {"unicode": "é"}}
    write_results(tmp_path, json.dumps(document))
    parsed, error = read_results(tmp_path)
    assert error is None
    assert wire.RunComplete(token="t", result=parsed).result == document


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[" * 65 + "]" * 65, f"nests deeper than {wire.MAX_DOCUMENT_DEPTH} levels"),
        ('{"a": "x\\u0000y"}', "NUL character"),
    ],
)
def test_read_results_the_server_would_refuse(tmp_path: Path, content: str, needle: str) -> None:
    """A document the wire refuses fails the run with the reason, instead of a report the
    server answers with 422."""
    write_results(tmp_path, content)
    document, error = read_results(tmp_path)
    assert document is None and error is not None and needle in error, error
    write_results(tmp_path, "[" * 64 + "]" * 64)
    assert read_results(tmp_path)[1] is None
