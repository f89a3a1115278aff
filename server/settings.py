"""Server settings: built once by the CLI or a test and handed to `create_app`, never at import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from farmhand import wire

#: The shortest bootstrap admin token a server starts with: a guessable one is refused.
MIN_ADMIN_TOKEN_LENGTH = 16


class Settings(BaseModel):
    """Everything the server can be told. `from_env` reads the `FARMHAND_*` variables."""

    data_dir: Path = Path("farmhand-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file farmhand.db in data_dir"
    )
    admin_token: str | None = Field(default=None, description="bootstrap admin bearer token")
    lease_ttl: float = Field(default=60.0, gt=0, description="seconds a lease lives unrenewed")
    startup_grace: float | None = Field(
        default=None, description="seconds live leases get after a server start; default lease_ttl"
    )
    sweep_interval: float = Field(default=5.0, gt=0, description="seconds between lease sweeps")
    max_attempts: int = Field(default=3, ge=1, description="attempts a record gets by default")
    max_command_length: int = Field(default=wire.MAX_COMMAND_LENGTH, ge=1)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    claim_poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="how often, while claims wait, the server looks whether one could take "
        "something now (a lease ran out, work came without a wakeup)",
    )
    listen_notify: bool = Field(
        default=True,
        description="PostgreSQL: wake claims on other replicas through LISTEN/NOTIFY; turn off "
        "behind a transaction-mode pooler unless notify_url is a direct connection",
    )
    notify_url: str | None = Field(
        default=None,
        description="PostgreSQL URL for LISTEN/NOTIFY, bypassing a pooler; default database_url",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="server log lines: text, or one JSON object per line"
    )
    storage_url: str | None = Field(
        default=None,
        description="where snapshot blobs live: file:///path or s3://bucket/prefix; "
        "default <data_dir>/blobs",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint for s3:// storage (MinIO, Ceph, …); default AWS "
        "(or AWS_ENDPOINT_URL_S3)",
    )
    s3_region: str | None = Field(
        default=None, description="region of the s3:// bucket; default AWS_DEFAULT_REGION"
    )
    s3_staging_dir: Path | None = Field(
        default=None,
        description="local directory where uploads to s3:// storage are staged and hashed; "
        "default <data_dir>/s3-staging",
    )
    max_snapshot_bytes: int = Field(
        default=64 * 1024**3, ge=1, description="largest snapshot upload accepted (413 beyond)"
    )
    inline_snapshot_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        le=16 * 1024**2,
        description="snapshots up to this size are kept in the database, beside their rows, "
        "instead of as files in the blob store (0: never)",
    )
    header_timeout: float = Field(
        default=20.0,
        gt=0,
        description="seconds a client has to send a request's headers (from its connection or "
        "its first byte); the connection is closed after that",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds a request body may pause while it is sent; the connection is "
        "closed after that (a request read in full, such as a long-poll claim, is never cut)",
    )
    max_connections: int = Field(
        default=8192,
        ge=1,
        description="open connections (or requests in progress) above which a request gets "
        "503; each idle long-polling agent holds about three",
    )
    page_refresh: float = Field(
        default=3.0, gt=0, description="seconds between the status pages' live refreshes"
    )
    umask: int = Field(
        default=0o077,
        ge=0,
        le=0o777,
        description="umask (octal: 077, 027) for the data directory, database, tokens and "
        "blobs; default 077: the server's user alone reads them",
    )

    @field_validator("umask", mode="before")
    @classmethod
    def _octal(cls, value: object) -> object:
        """`077` in the environment or on the command line is octal, as for `umask`."""
        if isinstance(value, str):
            try:
                return int(value.strip(), 8)
            except ValueError:
                raise ValueError(f"not an octal umask: {value!r} (e.g. 077)") from None
        return value

    @property
    def dir_mode(self) -> int:
        """The mode of directories the server creates (0700 under the default umask)."""
        return 0o777 & ~self.umask

    @property
    def file_mode(self) -> int:
        """The mode of files the server creates (0600 under the default umask)."""
        return 0o666 & ~self.umask

    @field_validator("admin_token")
    @classmethod
    def _admin_token_not_guessable(cls, value: str | None) -> str | None:
        if value and len(value) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"the admin token is {len(value)} characters; it must have at least "
                f"{MIN_ADMIN_TOKEN_LENGTH} (e.g. `openssl rand -hex 32`)"
            )
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'farmhand.db').resolve()}"

    @property
    def resolved_notify_url(self) -> str | None:
        """Where replicas LISTEN/NOTIFY; None when wakeups stay in-process (SQLite, or off)."""
        if not self.listen_notify or self.resolved_database_url.startswith("sqlite"):
            return None
        return self.notify_url or self.resolved_database_url

    @property
    def resolved_startup_grace(self) -> float:
        """Grace given to live leases at start (invariant 3)."""
        return self.lease_ttl if self.startup_grace is None else self.startup_grace

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from `FARMHAND_*` variables, then explicit overrides (CLI flags) on top."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get(f"FARMHAND_{name.upper()}")
            if raw not in (None, ""):
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
