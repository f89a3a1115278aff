"""Record inputs: the snapshots a record's run directory is staged with (`record_input`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand import wire
from farmhand.server.errors import Invalid
from farmhand.server.storage import snapshots
from farmhand.server.tables import CHECKPOINT, INPUT, REC

__all__ = ["attach", "check_stored", "newest_checkpoints", "of_records"]

_CHUNK = 500


def check_stored(session: Session, specs: Sequence[wire.RecordSpec]) -> None:
    """Invalid (422) naming the records whose input snapshots the server does not hold."""
    wanted = {sha for spec in specs for sha in spec.inputs.values()}
    if not wanted:
        return
    absent = set(snapshots.missing(session, wanted))
    if not absent:
        return
    problems = [
        f"record '{spec.key}' input '{path}' is snapshot {sha}"
        for spec in specs
        for path, sha in spec.inputs.items()
        if sha in absent
    ]
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    raise Invalid(
        "the server does not have these input snapshots (upload them first: PUT "
        f"/api/v1/snapshots/SHA256): {'; '.join(problems[:5])}{more}"
    )


def attach(
    session: Session,
    campaign_id: int,
    specs: Iterable[wire.RecordSpec],
    *,
    replaced: Iterable[int] = (),
) -> None:
    """Give the records of `specs` (by key, in `campaign_id`) their inputs; records in
    `replaced` (a forced resubmission) lose their old ones first."""
    replaced = sorted(replaced)
    for start in range(0, len(replaced), _CHUNK):
        chunk = replaced[start : start + _CHUNK]
        session.execute(delete(INPUT).where(INPUT.c.record_id.in_(chunk)))
    with_inputs = {spec.key: spec.inputs for spec in specs if spec.inputs}
    keys = sorted(with_inputs)
    rows = []
    for start in range(0, len(keys), _CHUNK):
        found = session.execute(
            select(REC.c.id, REC.c.key).where(
                REC.c.campaign_id == campaign_id, REC.c.key.in_(keys[start : start + _CHUNK])
            )
        )
        for record_id, key in found:
            rows.extend(
                {"record_id": record_id, "path": path, "sha256": sha}
                for path, sha in with_inputs[key].items()
            )
    if rows:
        session.execute(insert(INPUT), rows)


def of_records(
    session: Session | Connection, record_ids: Iterable[int]
) -> dict[int, dict[str, str]]:
    """`{record id: {path: sha256}}` for the records that have inputs."""
    ids = sorted(set(record_ids))
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(INPUT.c.record_id, INPUT.c.path, INPUT.c.sha256)
            .where(INPUT.c.record_id.in_(ids[start : start + _CHUNK]))
            .order_by(INPUT.c.record_id, INPUT.c.path)
        )
        for record_id, path, sha in rows:
            found[record_id][path] = sha
    return dict(found)


def newest_checkpoints(conn: Session | Connection, record_ids: Iterable[int]) -> dict[int, str]:
    """`{record id: sha256 of its newest checkpoint}`, for the records that have one."""
    ids = sorted(set(record_ids))
    newest: dict[int, str] = {}
    for start in range(0, len(ids), _CHUNK):
        latest = (
            select(func.max(CHECKPOINT.c.id))
            .where(CHECKPOINT.c.record_id.in_(ids[start : start + _CHUNK]))
            .group_by(CHECKPOINT.c.record_id)
        )
        rows = conn.execute(
            select(CHECKPOINT.c.record_id, CHECKPOINT.c.sha256).where(CHECKPOINT.c.id.in_(latest))
        )
        newest.update(dict(rows.all()))
    return newest
