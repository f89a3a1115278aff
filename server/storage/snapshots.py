"""Snapshots: the rows that say a verified blob is stored, who references it, checkpoints.

The bytes live in the blob store (`blobstore.py`); a `snapshot` row is written only after its
blob is stored, so a row always names a whole blob.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from farmhand import wire
from farmhand.server import auth
from farmhand.server.errors import Forbidden, Invalid, StaleLease
from farmhand.server.ownership import RUN_OWNER, not_your_run
from farmhand.server.queue.states import LIVE_RUN
from farmhand.server.tables import Checkpoint, RecordInput, Run, Snapshot

__all__ = [
    "add",
    "add_checkpoint",
    "check_lease",
    "find",
    "info",
    "missing",
    "page",
    "parse_lease_header",
]


def find(session: Session, sha256: str) -> Snapshot | None:
    """The snapshot row, or None."""
    return session.get(Snapshot, sha256)


def add(session: Session, *, sha256: str, size: int, token_id: int | None, now: datetime) -> bool:
    """Record a stored blob; False if a row was already there (a racing upload of the same
    bytes is fine: the bytes are identical)."""
    values = {"sha256": sha256, "size": size, "created_at": now, "token_id": token_id}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = Snapshot.__table__  # Core insert: the ORM form does not report what it did
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(table.c.sha256)
    return session.execute(stmt).first() is not None


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
    found = session.execute(stmt).first()
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
