"""POST /api/v1/snapshots/batch: many small snapshots in one request (an agent's output
archives that finished together), each verified and answered on its own.

The body is the `SnapshotBatch` JSON on one line, a newline, then the parts' bytes back to
back in the order the JSON lists them (`wire.BATCH_MEDIA_TYPE`). The body is read whole —
at most `wire.MAX_BATCH_BYTES` of parts, refused (413) while it streams in beyond that — so
the batch is bounded in memory; larger files go one by one through PUT /snapshots/{sha256}.

Per part, as for PUT: agent tokens name a live run of their own agents (`lease`); the bytes
must hash to the part's name; a part over `max_snapshot_bytes` is refused (413); a snapshot
already stored is not written again. The whole body is held to `max_body_bytes` (the request
gate) as well as to its own cap; an agent whose batch is refused whole sends the parts one by
one. A refused part
(403, 409, 400) is answered as such and kept nowhere; the others are stored. A body that does
not frame (no header line, sizes that do not add up to what follows) is refused whole (400)
and nothing is kept. Blobs are made durable together (`BlobStore.put_many`), then one
transaction writes every new row: one request, one transaction, instead of one of each per
archive. Parts up to `inline_snapshot_bytes` (most output archives) never touch the blob
store: their bytes go into that transaction (`snapshot_bytes`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from farmhand import wire
from farmhand.server.db import Database
from farmhand.server.errors import FarmhandError, Invalid
from farmhand.server.routes.deps import AnyRoleDep, Caller, DbDep, NowDep, SettingsDep
from farmhand.server.routes.openapi import errors
from farmhand.server.routes.snapshots.single import BlobsDep, HashMismatch, TooLarge
from farmhand.server.storage import snapshots
from farmhand.server.storage.blobs import BlobStore
from farmhand.wire import Role

router = APIRouter(tags=["snapshots"])

#: The header line: 256 parts of about 200 bytes each, with room to spare.
_MAX_HEADER = 256 * 1024
_MAX_BODY = wire.MAX_BATCH_BYTES + _MAX_HEADER


class Unframed(FarmhandError):
    """A batch body that does not split into its header and parts (400)."""


@dataclass
class _Part:
    spec: wire.SnapshotPart
    data: memoryview
    error: FarmhandError | None = None
    created: bool | None = None


@router.post(
    "/snapshots/batch",
    response_model=wire.SnapshotBatchStored,
    summary="Upload many small snapshots in one request",
    responses=errors(400, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the `SnapshotBatch` JSON on one line, a newline, then each part's "
            "bytes in order",
            "content": {wire.BATCH_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def post_snapshot_batch(
    request: Request,
    db: DbDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    now: NowDep,
    caller: AnyRoleDep,
) -> Response:
    """Store each part as the snapshot it names, verified, and answer per part (in order):
    `created` true or false, or the part's own `error`. For agent tokens each part names a
    live run of the token's agents (`lease`: `<run id>:<lease token>`). At most
    256 parts and 16 MiB of them; larger files go through PUT /snapshots/{sha256}."""
    body = await _read_capped(request)
    parts = _split(body)
    for part in parts:
        if part.spec.size > settings.max_snapshot_bytes:
            limit = settings.max_snapshot_bytes
            part.error = TooLarge(f"snapshot is {part.spec.size} bytes; the limit is {limit}")
    inline = settings.inline_snapshot_bytes
    answer = await run_in_threadpool(_store, db, blobs, caller, now, parts, inline)
    return Response(answer.model_dump_json(), media_type="application/json")


async def _read_capped(request: Request) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > _MAX_BODY:
        raise TooLarge(f"a batch is at most {_MAX_BODY} bytes; this one is {int(length)}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_BODY:
            raise TooLarge(f"a batch is at most {_MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _split(body: bytes) -> list[_Part]:
    """The header and each part's bytes; Unframed/Invalid when the body does not frame."""
    end = body.find(b"\n", 0, _MAX_HEADER)
    if end < 0:
        raise Unframed(
            f"a batch starts with its SnapshotBatch JSON on one line (at most {_MAX_HEADER} "
            "bytes) and a newline"
        )
    try:
        batch = wire.SnapshotBatch.model_validate_json(body[:end])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "header"
        raise Invalid(f"batch header: {where}: {first['msg']}") from None
    data = memoryview(body)[end + 1 :]
    wanted = sum(p.size for p in batch.parts)
    if wanted != len(data):
        raise Unframed(f"the parts add up to {wanted} bytes but {len(data)} follow the header")
    if wanted > wire.MAX_BATCH_BYTES:
        raise TooLarge(f"the parts of a batch are at most {wire.MAX_BATCH_BYTES} bytes")
    parts, at = [], 0
    for spec in batch.parts:
        parts.append(_Part(spec, data[at : at + spec.size]))
        at += spec.size
    return parts


def _store(
    db: Database,
    blobs: BlobStore,
    caller: Caller,
    now: datetime,
    parts: list[_Part],
    inline: int,
) -> wire.SnapshotBatchStored:
    # 1. Leases (agent tokens) and what is stored already: one short read transaction.
    with db.read() as session:
        if caller.role == Role.agent:
            _check_leases(session, caller, [p for p in parts if p.error is None])
        missing = set(snapshots.missing(session, {p.spec.sha256 for p in parts}))
    # 2. The bytes of the new ones, verified; those up to `inline` bytes go into the database
    # with their rows, the others are staged and made durable together in the blob store.
    new: dict[str, snapshots.NewSnapshot] = {}
    staged = {}
    for part in parts:
        sha256 = part.spec.sha256
        if part.error is not None:  # refused by its size or its lease
            continue
        if sha256 not in missing:
            part.created = False
            continue
        actual = hashlib.sha256(part.data).hexdigest()
        if actual != sha256:
            part.error = HashMismatch(f"the part's bytes hash to {actual}, not {sha256}")
            continue
        if sha256 in new:  # the same bytes twice in one batch: stored once
            continue
        if len(part.data) <= inline:
            new[sha256] = (sha256, len(part.data), bytes(part.data))
            continue
        handle, path = blobs.staging_file()
        with handle:
            handle.write(part.data)
        staged[sha256] = path
        new[sha256] = (sha256, len(part.data), None)
    try:
        blobs.put_many(list(staged.items()))
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    # 3. One transaction for every new row.
    if new:
        with db.write() as session:
            created = snapshots.add_many(
                session, list(new.values()), token_id=caller.token_id, now=now
            )
        seen: set[str] = set()
        for part in parts:
            if part.error is None and part.created is None:
                sha256 = part.spec.sha256
                part.created = sha256 in created and sha256 not in seen
                seen.add(sha256)
    return wire.SnapshotBatchStored(parts=[_answer(p) for p in parts])


def _check_leases(session: Session, caller: Caller, parts: list[_Part]) -> None:
    """Each part's `lease` names a live run of the caller's agents, or the part is refused."""
    named = []
    for part in parts:
        try:
            named.append((part, snapshots.parse_lease_header(part.spec.lease)))
        except FarmhandError as exc:
            part.error = exc
    leases = [lease for _, lease in named]
    refusals = snapshots.check_leases(session, leases, agent_token=caller.token_id)
    for (part, _), refusal in zip(named, refusals, strict=True):
        part.error = refusal


def _answer(part: _Part) -> wire.SnapshotPartStored:
    if part.error is None:
        return wire.SnapshotPartStored(sha256=part.spec.sha256, created=part.created)
    code = wire.ErrorCode(part.error.code).value
    error = wire.ErrorBody(detail=part.error.message, code=code)
    return wire.SnapshotPartStored(sha256=part.spec.sha256, error=error)
