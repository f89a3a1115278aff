"""/api/v1/snapshots: content-addressed blobs, streamed in and out; checkpoints of runs.

Uploads never sit in memory whole: the body is streamed into a staging file of the blob
store, hashed on the way, and only a verified file becomes the blob (then its row is written).

Submitter and admin tokens read every snapshot. An agent token reads only what its live
leases name (`ownership.readable`: their records' inputs and checkpoints, their parents'
archives): GET and /info answer 403 for anything else, whether it exists or not, and HEAD
answers 404 — as if it were not stored — unless the request names one of the token's live
runs in `X-Farmhand-Lease` (an upload about to happen: PUT would say as much). Listing is
for submitters and admins. Agent tokens upload only for a live run of their own agents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from farmhand import wire
from farmhand.server import ownership
from farmhand.server.db import Database
from farmhand.server.errors import FarmhandError, Forbidden, NotFound
from farmhand.server.routes.deps import (
    AgentDep,
    AnyRoleDep,
    Caller,
    DbDep,
    NowDep,
    SettingsDep,
    SubmitterDep,
    json_response,
)
from farmhand.server.routes.openapi import CHECKPOINT, errors
from farmhand.server.storage import snapshots
from farmhand.server.storage.blobs import BlobStore
from farmhand.wire import ErrorCode, Role

router = APIRouter(tags=["snapshots"])

Sha = Annotated[
    str, Path(pattern=wire.SHA256_PATTERN, description="the lowercase hex sha256 of the bytes")
]
#: Upload bytes are written (and hashed) in a worker thread this many at a time.
_FLUSH = 1024 * 1024


class TooLarge(FarmhandError):
    """An upload over the size cap (413)."""

    status = 413
    code = ErrorCode.too_large


class HashMismatch(FarmhandError):
    """Uploaded bytes that do not hash to the name they were sent under (400)."""

    status = 400
    code = ErrorCode.hash_mismatch


async def get_blobs(request: Request) -> BlobStore:
    """The app's blob store."""
    return request.app.state.blobs


BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
LeaseHeader = Annotated[
    str | None,
    Header(alias=wire.LEASE_HEADER, description="`<run id>:<lease token>`: agent tokens only"),
]


def _visible(db: Database, sha256: str, caller: Caller, lease: str | None) -> bool:
    """Whether HEAD may say if snapshot `sha256` is stored: always for submitters and
    admins; for an agent token, when it may read it or names a live run of its own."""
    if caller.lease_reader is None:
        return True
    with db.read() as session:
        try:
            ownership.check_readable(session, sha256, agent_token=caller.lease_reader)
            return True
        except Forbidden:
            pass
        try:
            run_id, token = snapshots.parse_lease_header(lease)
            snapshots.check_lease(session, run_id, token, agent_token=caller.lease_reader)
        except FarmhandError:
            return False
        return True


@router.put(
    "/snapshots/{sha256}",
    response_model=wire.SnapshotStored,
    status_code=201,
    summary="Upload a snapshot",
    responses={
        200: {"model": wire.SnapshotStored, "description": "already stored"},
        **errors(400, 409, 413, 422),
    },
)
async def put_snapshot(
    sha256: Sha,
    request: Request,
    db: DbDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    now: NowDep,
    caller: AnyRoleDep,
    lease: LeaseHeader = None,
) -> Response:
    """Store the request body as snapshot `sha256`, streamed to disk and verified: bytes that
    hash to anything else are refused (400) and nothing is kept. A snapshot already stored
    answers 200 at once. Agent tokens upload only for a live run of their own agents (header
    `X-Farmhand-Lease: <run id>:<lease token>`; 403 without it or for another token's run)."""
    cap = settings.max_snapshot_bytes
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > cap:
        raise TooLarge(f"snapshot is {int(length)} bytes; the limit is {cap}")

    def precheck() -> wire.Snapshot | None:
        with db.read() as session:
            if caller.role == Role.agent:
                run_id, token = snapshots.parse_lease_header(lease)
                snapshots.check_lease(session, run_id, token, agent_token=caller.token_id)
            return snapshots.info(session, sha256)

    existing = await run_in_threadpool(precheck)
    if existing is not None:
        body = wire.SnapshotStored(snapshot=existing, created=False)
        return Response(body.model_dump_json(), status_code=200, media_type="application/json")
    size, data = await _receive(request, blobs, sha256, cap, settings.inline_snapshot_bytes)

    def record() -> wire.SnapshotStored:
        with db.write() as session:
            created = snapshots.add(
                session, sha256=sha256, size=size, token_id=caller.token_id, now=now, data=data
            )
            if created:
                # Nothing can name a snapshot the server does not hold (submissions, reports
                # and checkpoints are refused for one), so a new one has no references: no
                # need to count them (two queries per output archive, issue 16).
                info = wire.Snapshot(sha256=sha256, size=size, created_at=now, references=0)
            else:
                info = snapshots.info(session, sha256)
        assert info is not None
        return wire.SnapshotStored(snapshot=info, created=created)

    stored = await run_in_threadpool(record)
    status = 201 if stored.created else 200
    return Response(stored.model_dump_json(), status_code=status, media_type="application/json")


async def _receive(
    request: Request, blobs: BlobStore, sha256: str, cap: int, inline: int
) -> tuple[int, bytes | None]:
    """Stream the body into a staging file and hash it; (its size, its bytes) when it is at
    most `inline` bytes (kept in the database with its row), else (its size, None) once it
    is stored as blob `sha256`."""
    handle, staged = await run_in_threadpool(blobs.staging_file)
    digest = hashlib.sha256()
    size = 0
    pending: list[bytes] = []
    pending_size = 0

    def flush(chunks: list[bytes]) -> None:
        for chunk in chunks:
            digest.update(chunk)
            handle.write(chunk)

    try:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise TooLarge(f"snapshot is over the limit of {cap} bytes")
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _FLUSH:
                    await run_in_threadpool(flush, pending)
                    pending, pending_size = [], 0
            await run_in_threadpool(flush, pending)
        finally:
            await run_in_threadpool(handle.close)
        actual = digest.hexdigest()
        if actual != sha256:
            raise HashMismatch(
                f"the uploaded bytes hash to {actual}, not {sha256}; nothing was kept"
            )
        if size <= inline:
            data = await run_in_threadpool(staged.read_bytes)
            staged.unlink(missing_ok=True)
            return size, data
        await run_in_threadpool(blobs.put, sha256, staged)
    except ClientDisconnect:
        staged.unlink(missing_ok=True)
        raise
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return size, None


@router.head(
    "/snapshots/{sha256}", summary="Ask whether a snapshot is stored", responses=errors(404, 422)
)
def head_snapshot(
    sha256: Sha, db: DbDep, caller: AnyRoleDep, lease: LeaseHeader = None
) -> Response:
    """200 with its `Content-Length` if the server holds it, else 404 (skip uploads it has).
    An agent token gets 404 for what it may not read, unless `X-Farmhand-Lease` names a live
    run of its own agents (it is about to upload)."""
    if not _visible(db, sha256, caller, lease):
        return Response(status_code=404)
    with db.read() as session:
        row = snapshots.find(session, sha256)
    if row is None:  # the headers a GET's 404 would have: its JSON error, without the body
        return Response(status_code=404, media_type="application/json")
    return Response(headers={"content-length": str(row.size), "accept-ranges": "bytes"})


@router.get(
    "/snapshots/{sha256}",
    summary="Download a snapshot",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the bytes"},
        206: {"content": {"application/octet-stream": {}}, "description": "the range asked for"},
        **errors(404, 416, 422),
    },
)
def get_snapshot(
    sha256: Sha,
    db: DbDep,
    blobs: BlobsDep,
    caller: AnyRoleDep,
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """The snapshot's bytes, streamed, with `Content-Length`; a single `Range: bytes=a-b`
    gets 206 and just those bytes. An agent token reads only what its live leases name: their
    inputs and checkpoints, their parents' archives (403 otherwise)."""
    with db.read() as session:
        ownership.check_readable(session, sha256, agent_token=caller.lease_reader)
        row = snapshots.find(session, sha256)
        kept = snapshots.bytes_of(session, sha256) if row is not None else None
    if row is None:
        raise NotFound(f"no snapshot {sha256}")
    size = row.size
    headers = {"accept-ranges": "bytes", "etag": f'"{sha256}"'}
    span = _parse_range(range_, size)
    if span == "unsatisfiable":
        return Response(
            wire.ErrorBody(
                detail=f"range {range_!r} lies outside {size} bytes", code=ErrorCode.range
            ).model_dump_json(),
            status_code=416,
            media_type="application/json",
            headers={"content-range": f"bytes */{size}"},
        )
    start, end, status = (0, size, 200) if span is None else (*span, 206)
    headers["content-length"] = str(end - start)
    if status == 206:
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
    if end <= start:
        body: Iterator[bytes] = iter(())
    elif kept is not None:
        body = iter([kept[start:end]])
    else:
        body = blobs.read(sha256, start, end)
    return StreamingResponse(
        body, status_code=status, headers=headers, media_type="application/octet-stream"
    )


def _parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
    """`(start, end)` (end exclusive) for one `bytes=` range; None to send everything (no
    header, or several ranges); "unsatisfiable" for a range outside the bytes."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":  # the last N bytes
            count = int(last)
            return (max(0, size - count), size) if count > 0 else "unsatisfiable"
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    except ValueError:
        return None
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, end


@router.get(
    "/snapshots/{sha256}/info",
    response_model=wire.Snapshot,
    summary="Describe a snapshot",
    responses=errors(404, 422),
)
def snapshot_info(sha256: Sha, db: DbDep, caller: AnyRoleDep) -> wire.Snapshot:
    """Size, creation time and how many record inputs, run archives and checkpoints use it.
    An agent token: only for what its live leases name (403 otherwise)."""
    with db.read() as session:
        ownership.check_readable(session, sha256, agent_token=caller.lease_reader)
        found = snapshots.info(session, sha256)
    if found is None:
        raise NotFound(f"no snapshot {sha256}")
    return found


@router.get(
    "/snapshots",
    response_model=wire.SnapshotPage,
    summary="List snapshots",
    responses=errors(422),
)
def list_snapshots(
    db: DbDep,
    _: SubmitterDep,
    after: Annotated[wire.Text | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> wire.SnapshotPage:
    """Snapshots in sha256 order with their reference counts; follow `next` for more."""
    with db.read() as session:
        return snapshots.page(session, after=after, limit=limit)


@router.post(
    "/runs/{run_id}/checkpoints",
    response_model=wire.Checkpoint,
    status_code=201,
    tags=["runs"],
    summary="Attach a checkpoint to a run",
    responses=errors(404, 409, 422),
    openapi_extra=CHECKPOINT,
)
def add_checkpoint(
    run_id: wire.Id, body: wire.CheckpointCreate, db: DbDep, now: NowDep, caller: AgentDep
) -> Response:
    """Record an uploaded checkpoint of a live run (fenced by its lease token; an agent token
    only for its own agents' runs); the record's next attempt restores the newest one."""
    with db.write() as session:
        checkpoint = snapshots.add_checkpoint(
            session, run_id=run_id, body=body, now=now, agent_token=caller.agent_token
        )
        return json_response(checkpoint, status_code=201)
