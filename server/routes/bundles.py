"""/api/v1/bundles and /api/v1/backup: moving campaigns between servers, and copying one."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError

from farmhand import wire
from farmhand.server.bundles import export as bundle_export
from farmhand.server.bundles import imports as bundles
from farmhand.server.errors import Conflict
from farmhand.server.routes.deps import (
    AdminDep,
    DbDep,
    NowDep,
    SubmitterDep,
    WakeupDep,
    json_response,
)
from farmhand.server.routes.openapi import BUNDLE, errors
from farmhand.server.storage import backup

router = APIRouter(tags=["bundles"])


@router.get(
    "/bundles/{campaign_id}",
    response_model=wire.BundlePage,
    summary="Export a page of a campaign: records with runs, results, inputs, parents",
    responses=errors(404, 422),
)
def export_bundle(
    campaign_id: wire.Id,
    db: DbDep,
    _: SubmitterDep,
    after: wire.Id | None = Query(None, description="record id to continue after (keyset)"),
    limit: int = Query(200, ge=1, le=bundle_export.MAX_PAGE),
) -> wire.BundlePage:
    """Records of the campaign in id order, each with everything a bundle keeps of it;
    follow `next`. `farmhand export` writes the pages and the snapshots they name to a tar."""
    with db.read() as session:
        return bundle_export.export_page(session, campaign_id=campaign_id, after=after, limit=limit)


@router.post(
    "/bundles",
    response_model=wire.BundleImported,
    summary="Import a chunk of a bundle: merge records into the campaign NAME:VERSION",
    responses=errors(409, 413, 422),
    openapi_extra=BUNDLE,
)
def import_bundle(
    body: wire.BundleImport, db: DbDep, now: NowDep, wakeup: WakeupDep, _: SubmitterDep
) -> Response:
    """Merge records into the campaign `name`:`version` (created when missing), idempotently:
    new keys are inserted with their runs; a same-spec record not done here takes the
    bundle's done state, result and runs; a different spec is reported in `conflicts` and
    left untouched. Every snapshot named must be uploaded first (422 otherwise)."""
    try:
        with db.write() as session:
            answer = bundles.import_chunk(session, body=body, now=now)
            response = json_response(answer)
    except IntegrityError as exc:
        # A submission inserted one of these keys between our look and our insert.
        raise Conflict(
            "the campaign changed while this chunk was imported; import again (it is idempotent)"
        ) from exc
    if answer.created or answer.merged:
        wakeup.notify(answer.created + answer.merged)
    return response


@router.get(
    "/backup",
    summary="Stream a consistent backup of the server (SQLite database and blobs) as a tar",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-tar": {}}}, **errors(409)},
)
def backup_server(request: Request, db: DbDep, _: AdminDep) -> StreamingResponse:
    """The SQLite database copied with the online backup API, then every blob; `farmhand
    restore` unpacks it into a new data directory. 409 on PostgreSQL (use pg_dump)."""
    from farmhand.server.app import VERSION

    settings = request.app.state.settings
    copy = backup.sqlite_copy(db, settings.data_dir / "backup-tmp")
    chunks = backup.stream(
        copy, request.app.state.blobs, data_dir=settings.data_dir, version=VERSION
    )
    return StreamingResponse(
        chunks,
        media_type="application/x-tar",
        headers={"Content-Disposition": 'attachment; filename="farmhand-backup.tar"'},
    )
