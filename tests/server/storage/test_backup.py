"""`GET /api/v1/backup`: a consistent SQLite copy plus every blob, streamed as a tar; 409 on
PostgreSQL (each test runs on both backends)."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from pathlib import Path

from fastapi.testclient import TestClient

from farmhand.server.storage import backup
from tests.server.helpers import API, campaign, submit


def test_backup_holds_the_database_and_every_blob(api: TestClient, tmp_path: Path) -> None:
    c = campaign(api, "kept")
    submit(api, c, "a", "b")
    blobs = {}
    for data in (b"one", b"two" * 100_000, b""):
        sha = hashlib.sha256(data).hexdigest()
        assert api.put(f"{API}/snapshots/{sha}", content=data).status_code == 201
        blobs[sha] = data
    r = api.get(f"{API}/backup")
    if api.app.state.db.dialect == "postgresql":
        assert r.status_code == 409
        assert "back it up with pg_dump, and copy the blob store" in r.json()["detail"]
        return
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    assert len(r.content) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = tar.getnames()
        assert names[:2] == ["backup.json", "farmhand.db"]
        assert "admin.token" not in names  # this server's admin token is configured, no file
        assert names[-1] == "backup-end.json"
        # The small snapshots' bytes live in the database (and so in its copy); the large
        # one is the blob store's only file.
        assert json.loads(tar.extractfile("backup-end.json").read()) == {"blobs": 1}
        manifest = json.loads(tar.extractfile("backup.json").read())
        assert manifest["format"] == "farmhand-backup" and manifest["blobs"] == 1
        (large,) = [sha for sha, data in blobs.items() if len(data) > 64 * 1024]
        assert [n for n in names if n.startswith("blobs/")] == [
            f"blobs/{large[:2]}/{large[2:4]}/{large}"
        ]
        assert tar.extractfile(f"blobs/{large[:2]}/{large[2:4]}/{large}").read() == blobs[large]
        (tmp_path / "copy.db").write_bytes(tar.extractfile("farmhand.db").read())
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT key FROM record ORDER BY key").fetchall() == [("a",), ("b",)]
    assert copy.execute("SELECT count(*) FROM snapshot").fetchone() == (3,)
    kept = dict(copy.execute("SELECT sha256, data FROM snapshot_bytes").fetchall())
    assert kept == {sha: data for sha, data in blobs.items() if sha != large}
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copy.close()
    # Nothing of the copy is left in the data directory.
    assert list((api.app.state.settings.data_dir / "backup-tmp").iterdir()) == []


def test_backup_needs_an_admin(api: TestClient) -> None:
    token = api.post(f"{API}/tokens", json={"role": "submitter"}).json()["token"]
    r = api.get(f"{API}/backup", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_tar_member_refuses_a_file_that_changes_size() -> None:
    pieces = backup.tar_member("x", 3, [b"ab"], mtime=0)
    next(pieces)  # the header
    assert next(pieces) == b"ab"
    try:
        next(pieces)
    except OSError as exc:
        assert "is 2 bytes, not 3" in str(exc)
    else:
        raise AssertionError("a short member went unnoticed")
