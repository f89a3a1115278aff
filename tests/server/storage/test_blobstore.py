"""The blob store contract, run against the file store (a tmp dir) and the S3 store (moto's
S3-compatible HTTP server on localhost, a fresh bucket per test), plus each store's own
promises and `open_store`'s URL handling."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import boto3
import pytest

from farmhand.cli.demo import free_port
from farmhand.server.errors import StorageError
from farmhand.server.settings import Settings
from farmhand.server.storage.blobs import CHUNK, BlobStore, FileStore, open_store
from farmhand.server.storage.s3 import S3Store

MiB = 1024 * 1024


def stage(store: BlobStore, data: bytes) -> tuple[str, Path]:
    """Write `data` into a new staging file; its sha256 and path."""
    handle, path = store.staging_file()
    with handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest(), path


def add(store: BlobStore, data: bytes) -> str:
    """Stage and put `data`; its sha256."""
    sha, path = stage(store, data)
    store.put(sha, path)
    return sha


def read_all(store: BlobStore, sha: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.read(sha, start, end))


# --- fixtures (s3_endpoint, aws_env, bucket: tests/support/s3.py) ---------------------------


@pytest.fixture
def s3_store(s3_endpoint: str, bucket: str, tmp_path: Path) -> S3Store:
    return S3Store.from_url(
        f"s3://{bucket}/farm/blobs",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        staging_dir=tmp_path / "staging",
    )


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each store in turn."""
    if request.param == "file":
        return FileStore(tmp_path / "blobs")
    return request.getfixturevalue("s3_store")


# --- the contract ---------------------------------------------------------------------------


def test_put_size_read_names_delete(store: BlobStore) -> None:
    data = os.urandom(3 * CHUNK + 123)
    sha = add(store, data)
    other = add(store, b"another blob")
    empty = add(store, b"")

    assert store.size(sha) == len(data)
    assert store.size(empty) == 0
    assert read_all(store, sha) == data
    assert read_all(store, empty) == b""
    assert sorted(store.names()) == sorted([sha, other, empty])

    store.delete(sha)
    assert store.size(sha) is None
    assert sorted(store.names()) == sorted([other, empty])
    store.delete(sha)  # a missing blob is fine
    with pytest.raises(FileNotFoundError):
        read_all(store, sha)


def test_read_ranges(store: BlobStore) -> None:
    data = bytes(range(256)) * 40_000  # ~10 MiB, crosses chunk boundaries
    sha = add(store, data)
    for start, end in [
        (0, 1),
        (1, 2),
        (100, 5000),
        (CHUNK - 1, CHUNK + 1),
        (CHUNK, 3 * CHUNK + 7),
        (len(data) - 10, None),
        (len(data) - 10, len(data) + 100),  # past the end: clamped
        (5, None),
        (0, len(data)),
    ]:
        assert read_all(store, sha, start, end) == data[start:end], (start, end)
    assert read_all(store, sha, 50, 50) == b""
    assert read_all(store, sha, len(data), None) == b""
    assert read_all(store, sha, len(data) + 5, None) == b""


def test_missing_blob(store: BlobStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    assert store.size(sha) is None
    assert sha not in set(store.names())
    with pytest.raises(FileNotFoundError):
        read_all(store, sha)


def test_put_is_idempotent_and_consumes_the_staged_file(store: BlobStore) -> None:
    data = b"the same bytes twice"
    sha, first = stage(store, data)
    store.put(sha, first)
    assert not first.exists()

    sha_again, second = stage(store, data)
    assert sha_again == sha
    store.put(sha, second)
    assert not second.exists()
    assert list(store.names()) == [sha]
    assert read_all(store, sha) == data


def test_bad_names_are_refused(store: BlobStore) -> None:
    for bad in ["ABC", "../" + "a" * 61, "A" * 64, "g" * 64, ""]:
        with pytest.raises(ValueError, match="sha256"):
            store.size(bad)


def test_a_64_mib_blob_streams_in_bounded_chunks(store: BlobStore) -> None:
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    handle, staged = store.staging_file()
    with handle:
        for i in range(64):
            piece = block[i:] + block[:i]  # 64 different MiB, never 64 MiB at once
            handle.write(piece)
            digest.update(piece)
    sha = digest.hexdigest()
    store.put(sha, staged)
    assert store.size(sha) == 64 * MiB

    back = hashlib.sha256()
    biggest = chunks = 0
    for chunk in store.read(sha):
        biggest = max(biggest, len(chunk))
        chunks += 1
        back.update(chunk)
    assert back.hexdigest() == sha
    assert biggest <= CHUNK
    assert chunks >= 64

    tail = hashlib.sha256()
    for chunk in store.read(sha, 60 * MiB + 1):
        assert len(chunk) <= CHUNK
        tail.update(chunk)
    expected = hashlib.sha256()
    expected.update(block[60:][1:] + block[:60])
    for i in range(61, 64):
        expected.update(block[i:] + block[:i])
    assert tail.hexdigest() == expected.hexdigest()


# --- the file store's own promises ----------------------------------------------------------


def test_file_store_layout_and_read_only_blobs(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "blobs")
    sha = add(store, b"layout")
    path = tmp_path / "blobs" / sha[:2] / sha[2:4] / sha
    assert store.local_path(sha) == path
    assert path.read_bytes() == b"layout"
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert store.local_path(hashlib.sha256(b"other").hexdigest()) is None


def test_file_store_stages_on_the_same_filesystem_and_publishes_only_on_put(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "blobs")
    data = os.urandom(2 * CHUNK)
    handle, staged = store.staging_file()
    sha = hashlib.sha256(data).hexdigest()
    with handle:
        handle.write(data[:CHUNK])
        handle.flush()
        # Half written: a reader finds nothing, not half a blob.
        assert staged.parent == store.tmp
        assert staged.stat().st_dev == store.root.stat().st_dev  # put is a rename
        assert store.size(sha) is None
        assert list(store.names()) == []
        handle.write(data[CHUNK:])
    assert store.size(sha) is None
    store.put(sha, staged)
    assert store.size(sha) == len(data)
    assert list(store.tmp.iterdir()) == []


# --- the S3 store's own promises ------------------------------------------------------------


def test_s3_store_keys_and_no_local_path(s3_store: S3Store, s3_endpoint: str) -> None:
    sha = add(s3_store, b"where am I")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    listed = client.list_objects_v2(Bucket=s3_store.bucket)["Contents"]
    assert [entry["Key"] for entry in listed] == [f"farm/blobs/{sha[:2]}/{sha}"]
    assert s3_store.local_path(sha) is None


def test_s3_store_put_skips_a_blob_it_has(s3_store: S3Store) -> None:
    uploads: list[str] = []
    for operation in ("PutObject", "CreateMultipartUpload"):
        s3_store.client.meta.events.register(
            f"before-call.s3.{operation}", lambda model, **_: uploads.append(model.name)
        )
    sha = add(s3_store, b"once")
    assert uploads == ["PutObject"]
    sha_again, staged = stage(s3_store, b"once")
    s3_store.put(sha_again, staged)
    assert uploads == ["PutObject"]  # found by HEAD, not sent again
    assert not staged.exists()
    assert sha_again == sha


def test_s3_store_names_ignore_foreign_keys(s3_store: S3Store, s3_endpoint: str) -> None:
    sha = add(s3_store, b"mine")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket=s3_store.bucket, Key="farm/blobs/readme.txt", Body=b"x")
    client.put_object(Bucket=s3_store.bucket, Key=f"elsewhere/{sha[:2]}/{sha}", Body=b"x")
    client.put_object(Bucket=s3_store.bucket, Key=f"farm/blobs/zz/{sha}", Body=b"x")
    assert list(s3_store.names()) == [sha]


def test_s3_store_names_page_through_the_listing(s3_store: S3Store) -> None:
    shas = {add(s3_store, str(i).encode()) for i in range(7)}
    s3_store.page_size = 2  # four pages, each continued by the server's token
    assert set(s3_store.names()) == shas


def test_s3_store_put_is_a_multipart_upload(s3_endpoint: str, bucket: str) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    store = S3Store(bucket, "p", client=client, part_size=5 * MiB)  # S3's smallest part
    data = os.urandom(11 * MiB)
    sha = add(store, data)
    head = client.head_object(Bucket=bucket, Key=store.key(sha))
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object of three parts
    assert read_all(store, sha) == data


def test_s3_store_stages_in_its_staging_dir(s3_store: S3Store, tmp_path: Path) -> None:
    handle, staged = s3_store.staging_file()
    handle.close()
    assert staged.parent == tmp_path / "staging"
    staged.unlink()


def test_s3_store_without_prefix(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = S3Store.from_url(f"s3://{bucket}", endpoint_url=s3_endpoint, staging_dir=tmp_path)
    sha = add(store, b"top level")
    assert store.key(sha) == f"{sha[:2]}/{sha}"
    assert list(store.names()) == [sha]


def test_s3_missing_bucket_fails_at_start_naming_it(s3_endpoint: str, aws_env: None) -> None:
    with pytest.raises(StorageError) as caught:
        S3Store.from_url("s3://no-such-bucket/x", endpoint_url=s3_endpoint)
    assert "'no-such-bucket'" in caught.value.message
    assert s3_endpoint in caught.value.message
    assert "does not exist" in caught.value.message


def test_s3_without_credentials_fails_at_start(
    s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError) as caught:
        S3Store.from_url(f"s3://{bucket}", endpoint_url=s3_endpoint)
    assert repr(bucket) in caught.value.message
    assert s3_endpoint in caught.value.message
    assert "AWS_ACCESS_KEY_ID" in caught.value.message


def test_s3_unreachable_endpoint_fails_at_start(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageError) as caught:
        S3Store.from_url("s3://somewhere", endpoint_url=nobody)
    assert "'somewhere'" in caught.value.message
    assert nobody in caught.value.message
    assert "cannot reach" in caught.value.message


# --- open_store -----------------------------------------------------------------------------


def test_open_store_defaults_to_files_in_the_data_dir(tmp_path: Path) -> None:
    for url in (None, ""):
        store = open_store(url, tmp_path)
        assert isinstance(store, FileStore)
        assert store.root == tmp_path / "blobs"


def test_open_store_file_url(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/elsewhere", tmp_path / "data")
    assert isinstance(store, FileStore)
    assert store.root == tmp_path / "elsewhere"


def test_open_store_s3_url_uses_the_settings(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/some/prefix/"
    settings = Settings.from_env(
        {
            "FARMHAND_STORAGE_URL": url,
            "FARMHAND_S3_ENDPOINT_URL": s3_endpoint,
            "FARMHAND_S3_REGION": "eu-west-3",
        },
        data_dir=tmp_path,
    )
    store = open_store(settings.storage_url, settings.data_dir, settings=settings)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (bucket, "some/prefix")
    assert store.endpoint == s3_endpoint
    assert store.client.meta.region_name == "eu-west-3"
    assert store.staging_dir == tmp_path / "s3-staging"
    sha = add(store, b"through open_store")
    assert read_all(store, sha) == b"through open_store"

    staged = Settings(s3_endpoint_url=s3_endpoint, s3_staging_dir=tmp_path / "stage")
    assert open_store(url, tmp_path, settings=staged).staging_dir == tmp_path / "stage"


def test_open_store_s3_without_settings_uses_the_aws_environment(
    s3_endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_store(f"s3://{bucket}", tmp_path)
    assert isinstance(store, S3Store)
    assert store.endpoint == s3_endpoint


@pytest.mark.parametrize(
    "url", ["http://bucket/prefix", "bucket/prefix", "S3://bucket", "s3:/bucket", "gs://b/p"]
)
def test_open_store_bad_scheme_names_the_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage_url") as caught:
        open_store(url, tmp_path)
    assert repr(url) in str(caught.value)


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3://bucket/p?x=1"])
def test_open_store_s3_url_without_a_bucket_names_the_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s3://bucket") as caught:
        open_store(url, tmp_path)
    assert repr(url) in str(caught.value)
