"""The rows an import writes for a record besides the record itself: its input files, its
runs (fresh ids and random lease tokens, no agent; a run live on the source arrives
`released`), their checkpoints, and its result; and the update by which a record here takes
a bundle's done state. Part of `bundles.py`, which decides what is imported."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import delete, insert, update
from sqlmodel import Session

from farmhand import wire
from farmhand.server.queue.states import LIVE_RUN
from farmhand.server.tables import (
    CHECKPOINT,
    INPUT,
    REC,
    RESULT,
    RUN,
)

__all__ = ["LIVE_RUN_ERROR", "insert_inputs", "insert_runs", "take_done"]

S = wire.RecordState
LIVE_RUN_ERROR = "imported from another server while live; it holds no lease here"


def insert_inputs(session: Session, records: list[tuple[int, wire.BundleRecord]]) -> None:
    """The records' input files (`record_input` rows)."""
    rows = [
        {"record_id": rid, "path": path, "sha256": sha}
        for rid, record in records
        for path, sha in record.inputs.items()
    ]
    if rows:
        session.execute(insert(INPUT), rows)


def take_done(session: Session, record_id: int, record: wire.BundleRecord, now: datetime) -> None:
    """Ours (not done, not leased) takes the bundle's done state; its runs follow."""
    session.execute(delete(RESULT).where(RESULT.c.record_id == record_id))
    session.execute(
        update(REC)
        .where(REC.c.id == record_id)
        .values(
            state=S.done.value,
            attempts=record.attempts,
            error=record.error,
            temporary_run_args=None,
            agent_id=None,
            run_id=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )


def insert_runs(
    session: Session, records: list[tuple[int, wire.BundleRecord]], now: datetime
) -> None:
    """The records' runs (fresh ids and tokens, no agent), their checkpoints and results."""
    rows, sources = [], []
    for rid, record in records:
        for run in record.runs:
            live = run.state in LIVE_RUN
            rows.append(
                {
                    "record_id": rid,
                    "agent_id": None,
                    "token": secrets.token_urlsafe(18),
                    "attempt": run.attempt,
                    "state": (wire.RunState.released if live else run.state).value,
                    "claimed_at": run.claimed_at,
                    "started_at": run.started_at,
                    "ended_at": now if live else run.ended_at,
                    "exit_code": run.exit_code,
                    "error": LIVE_RUN_ERROR if live else run.error,
                    "stdout_tail": run.stdout_tail,
                    "stderr_tail": run.stderr_tail,
                    "run_args": run.run_args,
                    "archive": run.archive,
                }
            )
            sources.append((rid, run))
    new_id: dict[tuple[int, int], int] = {}
    if rows:
        made = session.execute(
            insert(RUN).returning(RUN.c.id, sort_by_parameter_order=True), rows
        ).scalars()
        for (rid, run), run_id in zip(sources, made, strict=True):
            new_id[(rid, run.id)] = run_id
    checkpoints = [
        {
            "record_id": rid,
            "run_id": new_id[(rid, run.id)],
            "sha256": c.sha256,
            "created_at": c.created_at,
        }
        for rid, run in sources
        for c in run.checkpoints
    ]
    if checkpoints:
        session.execute(insert(CHECKPOINT), checkpoints)
    results = []
    for rid, record in records:
        if record.result is None:
            continue
        run_id = new_id.get((rid, record.result_run)) if record.result_run is not None else None
        if run_id is None and record.runs:
            run_id = new_id[(rid, record.runs[-1].id)]
        if run_id is not None:
            results.append({"record_id": rid, "run_id": run_id, "document": record.result})
    if results:
        session.execute(insert(RESULT), results)
