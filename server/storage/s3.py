"""Snapshot blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, …) through boto3.

The same interface as `blobstore.FileStore`: uploads are staged in a local file (the server
hashes them on the way in), and `put` sends a verified file as one object
`<prefix>/<ab>/<sha256>` with a multipart upload. S3 makes an object visible only once its
upload completes, so a reader sees a whole blob or none, as with the file store. Reads are
Range GETs streamed in chunks; no blob is ever held whole in memory.

Credentials and endpoint come from boto3's usual chain (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_S3`, instance roles, …) plus the
farmhand settings `s3_endpoint_url` and `s3_region`, which win when set. `from_url` checks the
bucket once, so a wrong bucket, endpoint or credentials stop the server at start with a
message naming them, not at the first upload.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

try:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "s3:// storage needs boto3: pip install 'farmhand[s3]'", name=exc.name
    ) from exc

from farmhand.server.errors import StorageError
from farmhand.server.storage.blobs import CHUNK, blob_name_ok

__all__ = ["S3Store"]

# Parts of 16 MiB keep a 64 GiB snapshot (the default cap) at 4,096 parts, under S3's 10,000;
# s3transfer grows the part size on its own for anything larger.
PART = 16 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Store:
    """Blobs as objects `<prefix>/<ab>/<sha256>` in one bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        staging_dir: Path | None = None,
        part_size: int = PART,
        page_size: int = 1000,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else boto3.client("s3")
        self.staging_dir = Path(staging_dir or tempfile.gettempdir())
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.transfer = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size)
        self.page_size = page_size

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        staging_dir: Path | None = None,
        check: bool = True,
    ) -> S3Store:
        """The store for `s3://bucket/prefix`; with `check`, fail now (StorageError naming
        the bucket and endpoint) if the bucket cannot be reached."""
        bucket, prefix = parse_url(url)
        # Path-style requests (endpoint/bucket/key) work on MinIO and Ceph without wildcard DNS.
        s3 = {"addressing_style": "path"} if endpoint_url else None
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region or None,
            config=Config(max_pool_connections=32, s3=s3),
        )
        store = cls(bucket, prefix, client=client, staging_dir=staging_dir)
        if check:
            store.check()
        return store

    @property
    def endpoint(self) -> str:
        """The endpoint the client talks to (for messages)."""
        return self.client.meta.endpoint_url

    def check(self) -> None:
        """Raise StorageError unless the bucket exists and the credentials may use it."""
        where = f"S3 bucket {self.bucket!r} at {self.endpoint}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError as exc:
            raise StorageError(
                f"{where}: no credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            ) from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING or code == "NoSuchBucket":
                raise StorageError(
                    f"{where} does not exist; create it or fix FARMHAND_STORAGE_URL "
                    "(and FARMHAND_S3_ENDPOINT_URL)"
                ) from exc
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(
                    f"{where}: access denied ({code}); check the credentials "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy"
                ) from exc
            raise StorageError(f"{where}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{where}: cannot reach the endpoint: {exc}") from exc

    def key(self, sha256: str) -> str:
        """The object key of blob `sha256` (whether or not it exists)."""
        if not blob_name_ok(sha256):
            raise ValueError(f"{sha256!r} is not a lowercase hex sha256")
        name = f"{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def staging_file(self) -> tuple[BinaryIO, Path]:
        """A new local temporary file for an upload, and its path."""
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.staging_dir)
        return os.fdopen(fd, "w+b"), Path(name)

    def put(self, sha256: str, staged: Path) -> None:
        """Upload the verified staged file as blob `sha256` unless it is there already; the
        staged file is removed either way."""
        key = self.key(sha256)
        try:
            if self._head(key) is None:
                self.client.upload_file(
                    str(staged),
                    self.bucket,
                    key,
                    ExtraArgs={"ContentType": "application/octet-stream"},
                    Config=self.transfer,
                )
        finally:
            staged.unlink(missing_ok=True)

    def put_many(self, staged: list[tuple[str, Path]]) -> None:
        """`put` for each, one after another (S3 has no batch PUT)."""
        for sha256, path in staged:
            self.put(sha256, path)

    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes; None if there is no such blob."""
        head = self._head(self.key(sha256))
        return None if head is None else head["ContentLength"]

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The blob's bytes `start`..`end` (exclusive; None = to the end), streamed from one
        Range GET in chunks of at most CHUNK bytes. A missing blob raises FileNotFoundError."""
        key = self.key(sha256)
        if end is not None and end <= start:
            return
        request: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(**request)["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                raise FileNotFoundError(f"no blob {sha256} in {self.bucket}/{key}") from exc
            if code == "InvalidRange":  # start at or past the end: nothing to give
                return
            raise
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def local_path(self, sha256: str) -> Path | None:
        """None: objects have no local file."""
        return None

    def names(self) -> Iterator[str]:
        """Every blob's sha256, listed page by page."""
        paginator = self.client.get_paginator("list_objects_v2")
        root = f"{self.prefix}/" if self.prefix else ""
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=root, PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:
            for entry in page.get("Contents", []):
                name = entry["Key"].rpartition("/")[2]
                if blob_name_ok(name) and entry["Key"] == self.key(name):
                    yield name

    def delete(self, sha256: str) -> None:
        """Remove a blob; a missing one is fine."""
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in _MISSING:
                return None
            raise


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix"); ValueError naming the URL."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"storage_url {url!r} must look like s3://bucket or s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")
