"""Bundle and backup files on the client: reading bundles, ordering records parents first,
and `farmhand restore`'s refusal of anything a backup does not hold (crafted tars)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from farmhand.cli import main as cli
from farmhand.cli.files import backups as backup_files
from farmhand.cli.files import bundles as bundle_files
from farmhand.cli.files.backups import RestoreError
from farmhand.cli.files.bundles import BundleError, BundleReader

BLOB = b"blob bytes"
SHA = hashlib.sha256(BLOB).hexdigest()
BLOB_NAME = f"blobs/{SHA[:2]}/{SHA[2:4]}/{SHA}"
MANIFEST = json.dumps({"format": "farmhand-backup", "version": 1}).encode()


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


GOOD = [
    regular("backup.json", MANIFEST),
    regular("farmhand.db", b"SQLite format 3\0"),
    regular("admin.token", b"fh_secret\n"),
    regular(BLOB_NAME, BLOB),
    regular("backup-end.json", b'{"blobs": 1}'),
]


def test_restore_unpacks_a_backup_into_a_new_data_dir(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "b.tar", GOOD)
    done = backup_files.restore(archive, tmp_path / "new")
    assert done.blobs == 1 and (tmp_path / "new" / BLOB_NAME).read_bytes() == BLOB
    assert (tmp_path / "new" / "admin.token").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar", "new"]


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (regular("/tmp/evil", b"x"), "is not a plain relative path"),
        (regular("../evil", b"x"), "is not a plain relative path"),
        (regular("blobs/../../evil", b"x"), "is not a plain relative path"),
        (regular("evil.sh", b"x"), "is not part of a backup"),
        (regular("blobs/aa/bb/" + "c" * 64, b"x"), "is filed under the wrong prefix"),
        (regular(f"blobs/{SHA[:2]}/{SHA[2:4]}/{SHA}", b"not the blob"), "is corrupted"),
        (special(BLOB_NAME, tarfile.SYMTYPE, "/etc/passwd"), "is not a regular file"),
        (special("farmhand.db", tarfile.LNKTYPE, "/etc/passwd"), "is not a regular file"),
        (special("admin.token", tarfile.CHRTYPE), "is not a regular file"),
        (special("blobs/aa/bb", tarfile.FIFOTYPE), "is not a regular file"),
    ],
)
def test_restore_refuses_crafted_members_and_writes_nothing(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], problem: str
) -> None:
    archive = make_tar(tmp_path / "evil.tar", [*GOOD[:2], member, *GOOD[2:]])
    with pytest.raises(RestoreError, match=problem):
        backup_files.restore(archive, tmp_path / "work" / "new")
    assert list((tmp_path / "work").iterdir()) == []  # the staging directory went too
    assert not Path("/tmp/evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar", "work"]


def test_restore_refuses_a_non_empty_target_a_truncated_file_and_a_non_backup(
    tmp_path: Path,
) -> None:
    archive = make_tar(tmp_path / "b.tar", GOOD)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "farmhand.db").write_text("keep me")
    with pytest.raises(RestoreError, match="exists and is not empty"):
        backup_files.restore(archive, tmp_path / "full")
    assert (tmp_path / "full" / "farmhand.db").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert backup_files.restore(archive, tmp_path / "empty").blobs == 1
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:1500])
    with pytest.raises(RestoreError, match="is truncated: a whole backup ends with"):
        backup_files.restore(cut, tmp_path / "cut")
    cut.write_bytes(archive.read_bytes()[:1540])  # inside farmhand.db's bytes
    with pytest.raises(RestoreError, match="truncated or damaged"):
        backup_files.restore(cut, tmp_path / "cut")
    short = make_tar(tmp_path / "short.tar", [*GOOD[:3], GOOD[4]])  # the blob is missing
    with pytest.raises(RestoreError, match="holds 0 blobs; its end marker says 1"):
        backup_files.restore(short, tmp_path / "short")
    late = make_tar(tmp_path / "late.tar", [*GOOD, regular("farmhand.db", b"x")])
    with pytest.raises(RestoreError, match="comes after the end marker"):
        backup_files.restore(late, tmp_path / "late")
    lone = make_tar(tmp_path / "lone.tar", [GOOD[1], regular("backup-end.json", b'{"blobs": 0}')])
    with pytest.raises(RestoreError, match="not a farmhand backup"):
        backup_files.restore(lone, tmp_path / "lone")
    for name in ("cut", "short", "late", "lone"):
        assert not (tmp_path / name).exists()


def test_restore_command_reports_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    archive = make_tar(tmp_path / "evil.tar", [regular("../x", b"x")])
    assert cli.main(["restore", str(archive), "--data-dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("farmhand: error:") and "'../x' is not a plain relative path" in err
    assert (
        cli.main(
            ["restore", str(make_tar(tmp_path / "ok.tar", GOOD)), "--data-dir", str(tmp_path / "d")]
        )
        == 0
    )
    assert "restored 1 blobs" in capsys.readouterr().out


def bundle(path: Path, manifest: dict, lines: list[dict]) -> Path:
    text = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return make_tar(
        path,
        [regular("bundle.json", json.dumps(manifest).encode()), regular("records.jsonl", text)],
    )


CAMPAIGN = {"name": "c", "version": 1, "created_at": "2026-01-01T00:00:00Z"}
MANIFEST_OK = {"format": "farmhand-bundle", "version": 1, "campaign": CAMPAIGN, "snapshots": []}


def record(key: str, *parents: str) -> dict:
    return {
        "key": key,
        "command": "true",
        "parents": list(parents),
        "state": "ready",
        "attempts": 0,
        "max_attempts": 3,
        "created_at": "2026-01-01T00:00:00Z",
    }


def test_bundle_records_are_sent_parents_first_in_chunks(tmp_path: Path) -> None:
    path = bundle(
        tmp_path / "b.tar",
        MANIFEST_OK,
        [record("child", "mid"), record("mid", "root"), record("root"), record("other")],
    )
    with BundleReader.open(path) as reader:
        ordered = bundle_files.parents_first(reader.lines)
        assert [line.key for line in ordered] == ["root", "mid", "child", "other"]
        assert [reader.record(line).key for line in ordered] == ["root", "mid", "child", "other"]
        assert [len(chunk) for chunk in bundle_files.chunks(ordered)] == [4]


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ({"format": "zip"}, "is not a farmhand bundle"),
        ({**MANIFEST_OK, "version": 9}, "is bundle version 9; this farmhand reads version 1"),
        ({**MANIFEST_OK, "campaign": {"name": "c"}}, "has no valid campaign"),
        ({**MANIFEST_OK, "snapshots": ["../x"]}, "lists snapshots that are not sha256s"),
    ],
)
def test_a_file_that_is_not_a_bundle_is_named(tmp_path: Path, manifest: dict, problem: str) -> None:
    with (
        pytest.raises(BundleError, match=problem),
        BundleReader.open(bundle(tmp_path / "b.tar", manifest, [])),
    ):
        pass


def test_a_bad_record_line_is_named(tmp_path: Path) -> None:
    path = bundle(tmp_path / "b.tar", MANIFEST_OK, [{**record("k"), "state": "asleep"}])
    with (
        BundleReader.open(path) as reader,
        pytest.raises(BundleError, match="record 'k' is not valid"),
    ):
        reader.record(reader.lines[0])
    (tmp_path / "plain.txt").write_text("hello")
    with (
        pytest.raises(BundleError, match="is not a readable tar file"),
        BundleReader.open(tmp_path / "plain.txt"),
    ):
        pass


def gzipped(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_truncated_bundle_is_named_before_anything_is_read(tmp_path: Path) -> None:
    lines = "".join(json.dumps(record(f"k{i}")) + "\n" for i in range(2000)).encode()
    whole = gzipped(
        tmp_path / "b.tar.gz",
        [regular("bundle.json", json.dumps(MANIFEST_OK).encode()), regular("records.jsonl", lines)],
    )
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated or damaged"), BundleReader.open(cut):
        pass


def test_a_gzip_bomb_record_line_is_refused_without_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_files, "MAX_RECORD_BYTES", 1024 * 1024)
    monkeypatch.setattr(bundle_files, "MAX_MANIFEST_BYTES", 1024 * 1024)
    bomb = b"x" * (8 * 1024 * 1024)  # compresses to a few kB
    manifest = json.dumps(MANIFEST_OK).encode()
    path = gzipped(
        tmp_path / "b.tar.gz", [regular("bundle.json", manifest), regular("records.jsonl", bomb)]
    )
    with (
        pytest.raises(BundleError, match=r"records\.jsonl line 1 is over 1048576 bytes"),
        BundleReader.open(path),
    ):
        pass
    path = gzipped(tmp_path / "m.tar.gz", [regular("bundle.json", manifest + b" " * len(bomb))])
    with (
        pytest.raises(BundleError, match=r"bundle\.json is over 1048576 bytes"),
        BundleReader.open(path),
    ):
        pass


def test_import_command_reports_a_damaged_bundle_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    whole = gzipped(
        tmp_path / "b.tar.gz",
        [
            regular("bundle.json", json.dumps(MANIFEST_OK).encode()),
            regular("records.jsonl", b"{}\n" * 50_000),
        ],
    )
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:-200])
    argv = ["import", str(cut), "--server", "http://127.0.0.1:9", "--token", "x"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("farmhand: error:") and len(err.splitlines()) == 1, err


def test_restore_into_a_symlinked_directory_is_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    archive = make_tar(tmp_path / "b.tar", GOOD)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for target in ("link", "dangling"):
        assert cli.main(["restore", str(archive), "--data-dir", str(tmp_path / target)]) == 1
        err = capsys.readouterr().err.strip()
        assert "is a symbolic link" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar", "dangling", "link", "real"]
    assert list((tmp_path / "real").iterdir()) == []
    assert (tmp_path / "link").is_symlink() and (tmp_path / "dangling").is_symlink()
