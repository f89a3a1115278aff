"""The shared ground of the wire contract: limits, states, roles, base models, tokens."""

from __future__ import annotations

import math
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Generic, TypeVar, get_args

from annotated_types import Interval
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

API_PREFIX = "/api/v1"
#: An agent-role snapshot upload names the live run it is for: `<run id>:<lease token>`.
LEASE_HEADER = "X-Farmhand-Lease"

#: Limits every server enforces on submitted records (a server may lower them).
MAX_KEY_LENGTH = 256
MAX_COMMAND_LENGTH = 64 * 1024
MAX_RECORDS_PER_REQUEST = 10_000
MAX_TAIL_BYTES = 16 * 1024
#: A run's error message (a failure report, an orphan's reason).
MAX_ERROR_LENGTH = 4096
MAX_CLAIM = 256
MAX_WAIT_SECONDS = 60.0
MAX_PARENTS = 1000
MAX_INPUTS = 1000
#: A snapshot's name: the lowercase hex sha256 of its bytes.
SHA256_PATTERN = r"^[0-9a-f]{64}$"
#: Campaign names, datasets and tags: letters, digits and `._-`, starting with a letter or digit.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
#: How deep a free-form document (defaults, run_args, a result) may nest. No real run_args
#: or results.json needs more than a handful of levels; a document nested hundreds deep
#: could be stored but not answered back (JSON serialisers stop near 255 levels).
MAX_DOCUMENT_DEPTH = 64
#: Whole numbers the database stores (INTEGER columns: 32 bits on PostgreSQL): ids, `after`,
#: priorities, exit codes, attempts. Beyond them a request is refused (422), not a 500.
MIN_INT = -(2**31)
MAX_INT = 2**31 - 1
#: The largest row id (ids are INTEGER columns too; a move to BIGINT raises this alone).
MAX_ID = MAX_INT


class RecordState(str, Enum):
    """Where a record (one calculation) stands; the transitions are in
    `farmhand.server.queue.states`."""

    waiting = "waiting"
    ready = "ready"
    claimed = "claimed"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"
    orphaned = "orphaned"

    def __str__(self) -> str:  # print(record.state) shows `done`
        return self.value


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

    def __str__(self) -> str:
        return self.value


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


def check_tags(value: list[str]) -> list[str]:
    """Tags are names of 1-100 characters; returns them sorted, without repeats."""
    if not value:  # most records (a bulk submission checks 10,000 per request)
        return value
    for tag in value:
        if not tag or len(tag) > 100 or not is_name(tag):
            raise ValueError(f"tag {tag!r} must be 1-100 letters, digits or ._- characters")
    return sorted(set(value))


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
    if not value:
        return value
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


def check_document(value: Any) -> Any:
    """A free-form JSON document: at most MAX_DOCUMENT_DEPTH levels deep, finite numbers, no
    NUL character in a string (PostgreSQL cannot store one). Returns it; ValueError if not.
    Walks level by level without recursion, so a document of any depth gets the error."""
    if not value:
        return value
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DOCUMENT_DEPTH:
            raise ValueError(f"nests deeper than {MAX_DOCUMENT_DEPTH} levels")
        deeper = []
        for container in level:
            if isinstance(container, dict):
                for key in container:
                    if "\x00" in key:
                        raise ValueError(f"key {key!r} holds a NUL character (\\u0000)")
                children: Any = container.values()
            else:
                children = container
            for child in children:
                if isinstance(child, str):
                    if "\x00" in child:
                        raise ValueError(f"string {child[:40]!r} holds a NUL character (\\u0000)")
                elif isinstance(child, (dict, list)):
                    deeper.append(child)
                elif isinstance(child, float) and not math.isfinite(child):
                    raise ValueError(f"{child} is not a JSON number")
        level = deeper
    return value


#: A free-form JSON object (campaign defaults, run_args), checked by `check_document`.
Document = Annotated[dict[str, Any], AfterValidator(check_document)]
#: A result document (a run's `results.json`): a JSON object or array, checked the same way.
ResultDocument = Annotated[dict[str, Any] | list[Any], AfterValidator(check_document)]
#: A whole number the database can hold; `Id` is one of its row ids.
#: (annotated_types, not `Field`, so FastAPI takes them as path and query parameters too.)
Int = Annotated[int, Interval(ge=MIN_INT, le=MAX_INT)]
Id = Annotated[int, Interval(ge=0, le=MAX_ID)]


def _nul_in(value: Any) -> str | None:
    """The first string holding a NUL character in a string, or in a list or flat mapping
    of strings; None if there is none."""
    if isinstance(value, str):
        items: Any = (value,)
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    else:
        return None
    for item in items:
        if isinstance(item, str) and "\x00" in item:
            return item
    return None


def _nul_message(item: str) -> str:
    return f"{item[:40]!r} holds a NUL character (\\u0000)"


def _no_nul(value: Any) -> Any:
    """Refuse a NUL character in a string, or in a list or flat mapping of strings."""
    item = _nul_in(value)
    if item is not None:
        raise ValueError(_nul_message(item))
    return value


#: A string without NUL characters: for query parameters that reach SQL (PostgreSQL refuses
#: a NUL in any text it is sent).
Text = Annotated[str, AfterValidator(_no_nul)]


_MODEL_FIELDS: dict[type, frozenset[str]] = {}


def _model_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of `cls` that hold a model (or None): their dicts are checked by that model."""
    names = _MODEL_FIELDS.get(cls)
    if names is None:

        def is_model(kind: Any) -> bool:
            return isinstance(kind, type) and issubclass(kind, BaseModel)

        names = frozenset(
            name
            for name, field in cls.model_fields.items()
            if is_model(field.annotation) or any(map(is_model, get_args(field.annotation)))
        )
        _MODEL_FIELDS[cls] = names
    return names


class Strict(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422, not a silent no-op. They
    refuse NaN and infinity, and NUL characters in strings (PostgreSQL stores neither)."""

    # defer_build: each model is built on its first use, not at import; an agent uses a
    # handful of them (its start, DESIGN.md); the server builds them all (`build_models`).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _strings_without_nul(cls, data: Any) -> Any:
        # One look over the fields given, not a validator call per field: a bulk submission
        # validates 10,000 records, and nine calls per record were half of that time. The
        # error keeps the field's place (`records.1.key`), as a field validator's would.
        if not isinstance(data, dict):
            return data
        models = _model_fields(cls)
        for name, value in data.items():
            if isinstance(value, str):
                item = value if "\x00" in value else None
            elif not value or name in models:  # empty, or a nested model that checks itself
                item = None
            else:
                item = _nul_in(value) if isinstance(value, (list, dict)) else None
            if item is not None and name in cls.model_fields:
                why = {"why": _nul_message(item)}
                error = PydanticCustomError("value_error", "Value error, {why}", why)
                problem = InitErrorDetails(type=error, loc=(name,), input=value)
                raise ValidationError.from_exception_data(cls.__name__, [problem])
        return data


class Loose(BaseModel):
    """Response bodies ignore unknown fields, so an older client survives a newer server."""

    model_config = ConfigDict(extra="ignore", from_attributes=True, defer_build=True)  # as Strict


T = TypeVar("T")


class Page(Loose, Generic[T]):
    """One page of a keyset-paginated listing; pass `next` as `after` to get the following page."""

    items: list[T]
    next: int | None = None
    total: int | None = Field(
        default=None, description="how many match the filters in all pages, when asked for"
    )


class ErrorCode(str, Enum):
    """The machine code of an error answer (`ErrorBody.code`): what the server sends and
    what clients (the agent's outbox among them) compare against."""

    bad_request = "bad_request"  # 400: the request cannot be acted on
    invalid = "invalid"  # 422: the body or a parameter is not valid
    unauthorized = "unauthorized"  # 401: no token, or an unknown one
    forbidden = "forbidden"  # 403: the token's role may not do this
    not_found = "not_found"  # 404
    conflict = "conflict"  # 409: the thing's state does not allow it
    invalid_transition = "invalid_transition"  # 409: a record state change not allowed
    stale_lease = "stale_lease"  # 409: a run report with a lease token no longer live
    too_large = "too_large"  # 413: a body or upload over its cap
    hash_mismatch = "hash_mismatch"  # 400: uploaded bytes that do not hash to their name
    range = "range"  # 416: a byte range outside the snapshot
    schema = "schema"  # the database's schema is not one this server can use
    storage = "storage"  # 503: the blob store cannot be used
    http_error = "http_error"  # any other HTTP error (405, …)
    error = "error"  # an answer that names no code


class ErrorBody(Loose):
    """Every 4xx/5xx answer: a one-line message naming the problem, plus a machine code
    (one of `ErrorCode`; a client reads codes it does not know as plain strings)."""

    detail: str
    code: str = ErrorCode.error.value
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
