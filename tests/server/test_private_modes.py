"""What the server keeps on disk is its user's alone (umask 077) unless FARMHAND_UMASK or
`--umask` say otherwise: the database holds commands, results and live lease tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from farmhand.cli.demo import free_port
from farmhand.client import FarmhandClient
from farmhand.server.app import prepare_data_dir
from farmhand.server.settings import Settings
from farmhand.server.storage.blobs import FileStore
from tests.conftest import LiveServer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_under(data_dir: Path) -> dict[str, int]:
    """The mode of the data dir and of everything in it, by relative path."""
    found = {".": mode(data_dir)}
    for path in data_dir.rglob("*"):
        found[str(path.relative_to(data_dir))] = mode(path)
    return found


@pytest.mark.parametrize(
    ("umask", "dirs", "files", "blobs"),
    [(None, 0o700, 0o600, 0o400), ("027", 0o750, 0o640, 0o440)],
)
def test_a_new_servers_data_dir_database_token_and_blobs_are_private(
    tmp_path: Path, umask: str | None, dirs: int, files: int, blobs: int
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    if umask:
        env["FARMHAND_UMASK"] = umask
    env["FARMHAND_INLINE_SNAPSHOT_BYTES"] = "0"  # the small upload below becomes a blob file
    port = free_port()
    data_dir = tmp_path / "data"
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, "", env, port, log=tmp_path / "log")
    old = os.umask(0o022)  # what the server inherits: the usual, world-readable default
    try:
        server.start()  # no admin token given: it writes admin.token
    finally:
        os.umask(old)
    try:
        token = (data_dir / "admin.token").read_text().strip()
        (tmp_path / "input.txt").write_text("an input file\n")
        with FarmhandClient(server.url, token) as client:
            sha = client.upload_snapshot(tmp_path / "input.txt")
            client.create_campaign("private")  # a write: the WAL has something in it
        found = modes_under(data_dir)
    finally:
        server.stop()

    blob = f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"
    assert found.pop(blob) == blobs
    assert found.pop("admin.token") == 0o600  # a secret: 0600 whatever the umask
    expected_dirs = {".", "blobs", "blobs/tmp", f"blobs/{sha[:2]}", f"blobs/{sha[:2]}/{sha[2:4]}"}
    assert {name: found.pop(name) for name in expected_dirs} == dict.fromkeys(expected_dirs, dirs)
    assert "farmhand.db" in found
    assert found == dict.fromkeys(found, files)  # farmhand.db, -wal, -shm, …


def test_the_app_makes_its_data_dir_and_database_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    """`create_app` outside `farmhand server` (which sets the process's umask) too."""
    settings = Settings(data_dir=tmp_path / "data")
    old = os.umask(0o022)
    try:
        prepare_data_dir(settings)
        store = FileStore(tmp_path / "data" / "blobs")
        handle, staged = store.staging_file()
        with handle:
            handle.write(b"x")
        sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        store.put(sha, staged)
    finally:
        os.umask(old)
    assert mode(settings.data_dir) == 0o700
    assert mode(settings.data_dir / "farmhand.db") == 0o600
    assert modes_under(settings.data_dir / "blobs") == {
        ".": 0o700,
        "tmp": 0o700,
        "2d": 0o700,
        "2d/71": 0o700,
        f"2d/71/{sha}": 0o400,
    }


def test_the_umask_setting_is_octal() -> None:
    assert Settings.from_env({"FARMHAND_UMASK": "027"}).umask == 0o027
    assert Settings(umask="22").file_mode == 0o644
    with pytest.raises(ValueError, match="not an octal umask"):
        Settings.from_env({"FARMHAND_UMASK": "rw"})
