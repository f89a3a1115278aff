"""The shared ground of the wire contract: limits, states, roles, base models, tokens."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"

#: Limits every server enforces on submitted records (a server may lower them).
MAX_KEY_LENGTH = 256
MAX_COMMAND_LENGTH = 64 * 1024
MAX_RECORDS_PER_REQUEST = 10_000
MAX_TAIL_BYTES = 16 * 1024
MAX_CLAIM = 256
MAX_WAIT_SECONDS = 60.0
MAX_PARENTS = 1000
MAX_INPUTS = 1000
#: A snapshot's name: the lowercase hex sha256 of its bytes.
SHA256_PATTERN = r"^[0-9a-f]{64}$"
#: Campaign names, datasets and tags: letters, digits and `._-`, starting with a letter or digit.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class RecordState(str, Enum):
    """Where a record (one calculation) stands; transitions live in `farmhand.server.states`."""

    waiting = "waiting"
    ready = "ready"
    claimed = "claimed"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"
    orphaned = "orphaned"


#: States in which a record is held by a lease.
LEASED_STATES = (RecordState.claimed, RecordState.running)


class RunState(str, Enum):
    """Where one attempt (run) stands. `leased` and `running` are live; the rest are final."""

    leased = "leased"
    running = "running"
    done = "done"
    failed = "failed"
    lost = "lost"
    released = "released"
    cancelled = "cancelled"
    orphaned = "orphaned"


LIVE_RUN_STATES = (RunState.leased, RunState.running)


class Role(str, Enum):
    """What a bearer token may do."""

    admin = "admin"
    submitter = "submitter"
    agent = "agent"


def is_name(value: str) -> bool:
    """A campaign name, dataset or tag: letters, digits and `._-`, starting alnum."""
    return value[0].isalnum() and all(c.isalnum() or c in "._-" for c in value)


def is_sha256(value: str) -> bool:
    """A snapshot name: 64 lowercase hex digits."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_input_path(path: str) -> str:
    """An input's place in the run directory: a relative POSIX path with no `..`, `.` or
    empty parts, no backslash or NUL, at most 1024 characters. Returns it; ValueError if not."""
    if not path or len(path) > 1024:
        raise ValueError(f"input path {path[:80]!r} must be 1-1024 characters")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"input path {path!r} must be relative, with / between parts")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"input path {path!r} may not have empty, '.' or '..' parts")
    return path


def check_inputs(value: dict[str, str]) -> dict[str, str]:
    """Validate `{path in the run directory: sha256}`; returns it sorted by path."""
    if len(value) > MAX_INPUTS:
        raise ValueError(f"at most {MAX_INPUTS} inputs per record, not {len(value)}")
    for path, digest in value.items():
        check_input_path(path)
        if not isinstance(digest, str) or not is_sha256(digest):
            raise ValueError(f"input {path!r}: {digest!r} is not a lowercase hex sha256")
    paths = set(value)
    for path in paths:  # "a" and "a/b" cannot both be files
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise ValueError(f"input {path!r} lies inside input {'/'.join(parts[:i])!r}")
    return dict(sorted(value.items()))


class Strict(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class Loose(BaseModel):
    """Response bodies ignore unknown fields, so an older client survives a newer server."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)


T = TypeVar("T")


class Page(Loose, Generic[T]):
    """One page of a keyset-paginated listing; pass `next` as `after` to get the following page."""

    items: list[T]
    next: int | None = None


class ErrorBody(Loose):
    """Every 4xx/5xx answer: a one-line message naming the problem, plus a machine code."""

    detail: str
    code: str = "error"
    errors: list[dict[str, Any]] | None = None


# --- tokens ------------------------------------------------------------------------------


class TokenCreate(Strict):
    """A new bearer token."""

    role: Role
    name: str = Field(default="", max_length=200)


class TokenCreated(Loose):
    """The only time the secret is shown: the server keeps only its hash."""

    id: int
    role: Role
    name: str
    token: str


class TokenInfo(Loose):
    """A bearer token as the server lists it: never its secret."""

    id: int
    role: Role
    name: str
    created_at: datetime
    revoked: bool


class Health(Loose):
    """`/healthz`: the server is up and its database answers."""

    status: str
    version: str
    database: str
