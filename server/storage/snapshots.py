"""Snapshots: the rows that say a verified blob is stored, who references it, checkpoints.

The bytes of a small snapshot (up to `Settings.inline_snapshot_bytes`) live in the
`snapshot_bytes` table, written in the same transaction as its row; larger ones live in the
blob store (`blobs.py`), and their row is written only after the blob is stored. Either way a
row always names whole bytes. Readers ask `bytes_of` first, then the blob store.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, literal, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand import wire
from farmhand.server import auth
from farmhand.server.errors import FarmhandError, Forbidden, Invalid, StaleLease
from farmhand.server.ownership import RUN_OWNER, not_your_run
from farmhand.server.queue.states import LIVE_RUN
from farmhand.server.tables import (
    SNAPSHOT,
    SNAPSHOT_BYTES,
    Checkpoint,
    RecordInput,
    Run,
    Snapshot,
    UTCDateTime,
)

__all__ = [
    "NewSnapshot",
    "add",
    "add_checkpoint",
    "add_many",
    "bytes_of",
    "check_lease",
    "check_leases",
    "find",
    "info",
    "missing",
    "page",
    "parse_lease_header",
]


def find(session: Session, sha256: str) -> Snapshot | None:
    """The snapshot row, or None."""
    return session.get(Snapshot, sha256)


#: A verified upload: its sha256, size, and its bytes when they are kept in the database
#: (None: already in the blob store).
NewSnapshot = tuple[str, int, bytes | None]


def _insert_rows(dialect: str) -> object:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    return (
        insert(SNAPSHOT)
        .values(
            sha256=bindparam("b_sha256"),
            size=bindparam("b_size"),
            created_at=bindparam("b_now", type_=UTCDateTime),
            token_id=bindparam("b_token_id"),
        )
        .on_conflict_do_nothing()
        .returning(SNAPSHOT.c.sha256)
    )


#: Per dialect: a row per new snapshot, saying which were new (a racing upload of the same
#: bytes is fine: the bytes are identical). Built once: building costs more than running.
_INSERT_ROWS = {name: _insert_rows(name) for name in ("postgresql", "sqlite")}
_INSERT_BYTES = SNAPSHOT_BYTES.insert().values(
    sha256=bindparam("b_sha256"), data=bindparam("b_data")
)


def add_many(
    session: Session, items: list[NewSnapshot], *, token_id: int | None, now: datetime
) -> set[str]:
    """Record verified uploads, each (sha256, size, bytes or None); the bytes given go into
    `snapshot_bytes` in this transaction. Returns the sha256s that were new (rows already
    there keep theirs, and their bytes)."""
    if not items:
        return set()
    conn = session.connection()
    rows = [
        {"b_sha256": sha, "b_size": size, "b_now": now, "b_token_id": token_id}
        for sha, size, _ in items
    ]
    # Many rows: one statement for all of them (SQLAlchemy's "insertmanyvalues").
    stmt = _INSERT_ROWS[conn.dialect.name]
    created = set(conn.execute(stmt, rows if len(rows) > 1 else rows[0]).scalars())
    data = [
        {"b_sha256": sha, "b_data": blob}
        for sha, _, blob in items
        if blob is not None and sha in created
    ]
    if data:
        conn.execute(_INSERT_BYTES, data)
    return created


def add(
    session: Session,
    *,
    sha256: str,
    size: int,
    token_id: int | None,
    now: datetime,
    data: bytes | None = None,
) -> bool:
    """Record one verified upload (`data`: its bytes, to keep in the database); False if a
    row was already there."""
    return bool(add_many(session, [(sha256, size, data)], token_id=token_id, now=now))


def bytes_of(session: Session | Connection, sha256: str) -> bytes | None:
    """The bytes of a snapshot kept in the database; None when they are in the blob store
    (or there is no such snapshot)."""
    found = session.execute(
        select(SNAPSHOT_BYTES.c.data).where(SNAPSHOT_BYTES.c.sha256 == sha256)
    ).scalar()
    return None if found is None else bytes(found)


def missing(session: Session | Connection, digests: Iterable[str]) -> list[str]:
    """Which of `digests` the server does not hold, sorted."""
    wanted = sorted(set(digests))
    have: set[str] = set()
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        have.update(
            session.execute(select(Snapshot.sha256).where(Snapshot.sha256.in_(chunk))).scalars()
        )
    return [d for d in wanted if d not in have]


def _references(shas: list[str]) -> object:
    inputs = select(RecordInput.sha256.label("sha"), literal(1).label("n")).where(
        RecordInput.sha256.in_(shas)
    )
    archives = select(Run.archive.label("sha"), literal(1).label("n")).where(Run.archive.in_(shas))
    checkpoints = select(Checkpoint.sha256.label("sha"), literal(1).label("n")).where(
        Checkpoint.sha256.in_(shas)
    )
    refs = union_all(inputs, archives, checkpoints).subquery()
    return select(refs.c.sha, func.count()).group_by(refs.c.sha)


def _wire(rows: list[Snapshot], session: Session) -> list[wire.Snapshot]:
    shas = [row.sha256 for row in rows]
    counts = dict(session.execute(_references(shas)).all()) if shas else {}  # type: ignore[arg-type]
    return [
        wire.Snapshot(
            sha256=row.sha256,
            size=row.size,
            created_at=row.created_at,
            references=counts.get(row.sha256, 0),
        )
        for row in rows
    ]


def info(session: Session, sha256: str) -> wire.Snapshot | None:
    """The snapshot with its reference count (record inputs, run archives, checkpoints)."""
    row = find(session, sha256)
    return None if row is None else _wire([row], session)[0]


def page(session: Session, *, after: str | None, limit: int) -> wire.SnapshotPage:
    """Snapshots in sha256 order after `after`."""
    stmt = select(Snapshot).order_by(Snapshot.sha256).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(Snapshot.sha256 > after)
    rows = list(session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return wire.SnapshotPage(items=_wire(rows, session), next=rows[-1].sha256 if more else None)


def parse_lease_header(value: str | None) -> tuple[int, str]:
    """`<run id>:<lease token>` from the X-Farmhand-Lease header; Forbidden if absent/bad."""
    run, _, token = (value or "").partition(":")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (run.isascii() and run.isdigit() and len(run) <= 10) or int(run) > wire.MAX_ID:
        run = ""
    if not run or not token:
        raise Forbidden(
            "an agent token uploads snapshots only for a run it holds: send the header "
            "X-Farmhand-Lease: <run id>:<lease token>"
        )
    return int(run), token


def check_lease(
    session: Session,
    run_id: int,
    token: str,
    *,
    lock: bool = False,
    agent_token: int | None = None,
) -> Run:
    """The live run `run_id` if `token` is its lease token; StaleLease (409) otherwise, and
    Forbidden (403) when `agent_token` is given and did not register the run's agent."""
    stmt = select(Run, RUN_OWNER).where(Run.id == run_id)
    if lock:
        stmt = stmt.with_for_update(of=Run)
    return _fence(session.execute(stmt).first(), run_id, token, agent_token)


def check_leases(
    session: Session, leases: list[tuple[int, str]], *, agent_token: int | None
) -> list[FarmhandError | None]:
    """`check_lease` for many (run id, token) pairs with one query: per pair, None when it
    holds, else the error it gets."""
    wanted = sorted({run_id for run_id, _ in leases})
    found = (
        {
            row[0].id: row
            for row in session.execute(select(Run, RUN_OWNER).where(Run.id.in_(wanted)))
        }
        if wanted
        else {}
    )
    errors: list[FarmhandError | None] = []
    for run_id, token in leases:
        try:
            _fence(found.get(run_id), run_id, token, agent_token)
            errors.append(None)
        except FarmhandError as exc:
            errors.append(exc)
    return errors


def _fence(found: Any, run_id: int, token: str, agent_token: int | None) -> Run:
    """The run of a (Run, agent_token) row if `token` holds its live lease (see check_lease)."""
    if found is not None:
        refusal = not_your_run(run_id, found.agent_token, agent_token)
        if refusal is not None:
            raise refusal
    run = found[0] if found is not None else None
    if run is None or not auth.same_secret(run.token, token) or run.state not in LIVE_RUN:
        raise StaleLease(f"run {run_id} is not a live run held with this lease token")
    return run


def add_checkpoint(
    session: Session,
    *,
    run_id: int,
    body: wire.CheckpointCreate,
    now: datetime,
    agent_token: int | None = None,
) -> wire.Checkpoint:
    """Attach an uploaded checkpoint to a live run (fenced by its lease token and, with
    `agent_token`, by the token its agent registered with)."""
    run = check_lease(session, run_id, body.token, lock=True, agent_token=agent_token)
    if find(session, body.sha256) is None:
        raise Invalid(f"checkpoint snapshot {body.sha256} is not on the server; upload it first")
    row = Checkpoint(record_id=run.record_id, run_id=run_id, sha256=body.sha256, created_at=now)
    session.add(row)
    session.flush()
    return wire.Checkpoint.model_validate(row, from_attributes=True)
