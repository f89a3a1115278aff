"""The dependency graph: a record waits until every parent is done.

Edges live in `record_parent` (child `record_id` → `parent_id`). Three things move records
along them, each inside the caller's write transaction, so a child becomes ready in the same
transaction that finished its last parent:

- `unblock(parents)`: parents became done → children whose parents are now all done go
  from `waiting` to `ready`.
- `fail_downstream(parents)`: parents ended `failed` or `cancelled` → every waiting
  descendant, transitively, becomes `failed` with "upstream failed: <parent key>" (the rule
  of the old high-throughput runner: a parent in error turns its children into errors).
- `reopen(records)`: records were re-queued → exactly the descendants that failed upstream
  because of them go back to `waiting`.

Each function takes the transaction it runs in: a route's ORM session or Core connection.

Concurrency (PostgreSQL): two transactions finishing two parents of one child must not both
decide "the other parent is not done yet". `unblock` therefore locks the candidate children
(`FOR UPDATE`, in id order) before it looks at their parents: the second transaction waits for
the first to commit and then, in a new statement, sees its parent as done.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased
from sqlmodel import Session

from farmhand.server.db import connection_of, literal_in
from farmhand.server.errors import Invalid
from farmhand.server.queue import states
from farmhand.server.queue.states import Event
from farmhand.server.tables import EDGE, REC
from farmhand.wire import RecordState

UPSTREAM = "upstream failed: "
_CHUNK = 5000


def upstream_error(parent_key: str) -> str:
    """The error of a record failed because `parent_key` failed or was cancelled."""
    return f"{UPSTREAM}{parent_key}"


def link(session: Session | Connection, edges: Iterable[tuple[int, int]]) -> None:
    """Store (record, parent) edges."""
    rows = [{"record_id": child, "parent_id": parent} for child, parent in edges]
    for start in range(0, len(rows), _CHUNK):
        session.execute(insert(EDGE), rows[start : start + _CHUNK])


def unlink(session: Session | Connection, record_ids: list[int]) -> None:
    """Forget the parents of these records (a forced submission gives new ones)."""
    for start in range(0, len(record_ids), _CHUNK):
        chunk = record_ids[start : start + _CHUNK]
        session.execute(delete(EDGE).where(EDGE.c.record_id.in_(chunk)))


def parents_of(
    session: Session | Connection, record_ids: list[int]
) -> dict[int, list[tuple[int, str]]]:
    """Each record's parents as (id, key), in id order."""
    out: dict[int, list[tuple[int, str]]] = {rid: [] for rid in record_ids}
    for start in range(0, len(record_ids), _CHUNK):
        rows = session.execute(
            select(EDGE.c.record_id, REC.c.id, REC.c.key)
            .join(REC, REC.c.id == EDGE.c.parent_id)
            .where(EDGE.c.record_id.in_(record_ids[start : start + _CHUNK]))
            .order_by(EDGE.c.record_id, REC.c.id)
        )
        for child, pid, key in rows:
            out[child].append((pid, key))
    return out


def children_of(session: Session | Connection, record_id: int) -> list[str]:
    """Keys of a record's children, in id order."""
    rows = session.execute(
        select(REC.c.key)
        .join(EDGE, EDGE.c.record_id == REC.c.id)
        .where(EDGE.c.parent_id == record_id)
        .order_by(REC.c.id)
    )
    return list(rows.scalars())


def descendants(session: Session | Connection, record_ids: Iterable[int]) -> set[int]:
    """Every record that (transitively) depends on one of these."""
    roots = list(record_ids)
    if not roots:
        return set()
    down = select(EDGE.c.record_id.label("id")).where(EDGE.c.parent_id.in_(roots))
    down = down.cte("down", recursive=True)
    down = down.union(select(EDGE.c.record_id).join(down, EDGE.c.parent_id == down.c.id))
    return set(session.execute(select(down.c.id)).scalars())


def unblock(session: Session | Connection, parent_ids: list[int], *, now: datetime) -> int:
    """Children of these (now done) parents whose parents are all done become ready."""
    if not parent_ids:
        return 0
    waiting = states.source_values(Event.unblock)
    candidates = (
        select(REC.c.id)
        .where(
            REC.c.id.in_(select(EDGE.c.record_id).where(EDGE.c.parent_id.in_(parent_ids))),
            literal_in(REC.c.state, waiting),
        )
        .order_by(REC.c.id)
    )
    if connection_of(session).dialect.name == "postgresql":
        candidates = candidates.with_for_update()
    ids = list(session.execute(candidates).scalars())
    if not ids:
        return 0
    parent = aliased(REC)
    not_done = exists(
        select(EDGE.c.parent_id)
        .join(parent, parent.c.id == EDGE.c.parent_id)
        .where(EDGE.c.record_id == REC.c.id, parent.c.state != RecordState.done.value)
    )
    return session.execute(
        update(REC)
        .where(REC.c.id.in_(ids), literal_in(REC.c.state, waiting), ~not_done)
        .values(state=states.target(Event.unblock).value, error=None, updated_at=now)
    ).rowcount


def fail_downstream(
    session: Session | Connection, parents: dict[int, str], *, now: datetime
) -> set[int]:
    """Waiting descendants of these failed or cancelled parents (id → key) fail upstream;
    the campaigns of those that did (their last records may be among them)."""
    campaigns: set[int] = set()
    for parent_id, key in sorted(parents.items()):
        below = descendants(session, [parent_id])
        if not below:
            continue
        failed = (
            update(REC)
            .where(
                REC.c.id.in_(sorted(below)),
                literal_in(REC.c.state, states.source_values(Event.upstream_failed)),
            )
            .values(
                state=states.target(Event.upstream_failed).value,
                error=upstream_error(key),
                updated_at=now,
            )
            .returning(REC.c.campaign_id)
        )
        campaigns.update(session.execute(failed).scalars())
    return campaigns


def reopen(
    session: Session | Connection, record_ids: list[int], keys: dict[int, str], *, now: datetime
) -> int:
    """Descendants that failed upstream because of these records wait again."""
    below = descendants(session, record_ids)
    if not below:
        return 0
    errors = [upstream_error(keys[rid]) for rid in record_ids]
    reopened = 0
    for start in range(0, len(errors), _CHUNK):
        reopened += session.execute(
            update(REC)
            .where(
                REC.c.id.in_(sorted(below)),
                REC.c.state == RecordState.failed.value,
                REC.c.error.in_(errors[start : start + _CHUNK]),
            )
            .values(
                state=RecordState.waiting.value,
                error=None,
                attempts=0,
                updated_at=now,
                end_seq=None,  # it ended; it will end again (catalog/ended.py)
            )
        ).rowcount
    # Every reopened record has the re-queued record (not done) above it: it waits.
    return reopened


def settle(session: Session | Connection, record_ids: list[int], *, now: datetime) -> None:
    """Place records that were just queued by their parents: waiting while a parent is not
    done, failed upstream when a parent has failed or was cancelled, else left ready."""
    parents = parents_of(session, record_ids)
    above = sorted({pid for ps in parents.values() for pid, _ in ps})
    if not above:
        return
    state_of = dict(session.execute(select(REC.c.id, REC.c.state).where(REC.c.id.in_(above))).all())
    done = RecordState.done.value
    waiting = [rid for rid, ps in parents.items() if any(state_of[p] != done for p, _ in ps)]
    if waiting:
        session.execute(
            update(REC)
            .where(REC.c.id.in_(waiting))
            .values(state=RecordState.waiting.value, updated_at=now, end_seq=None)
        )
    dead = (RecordState.failed.value, RecordState.cancelled.value)
    fail_downstream(
        session,
        {pid: key for ps in parents.values() for pid, key in ps if state_of[pid] in dead},
        now=now,
    )


def check_acyclic(
    new_edges: dict[int, list[int]],
    key_of: dict[int, str],
    session: Session | Connection,
    replaced: set[int],
) -> None:
    """Refuse (422) a submission whose edges, with those already stored, form a cycle.

    New records cannot be parents of stored ones, so a cycle through stored records must pass
    a replaced record; only the stored descendants of replaced records join the check.
    """
    graph = {node: list(parents) for node, parents in new_edges.items()}
    stored = descendants(session, replaced) - set(graph)
    if stored:
        for child, parents in parents_of(session, sorted(stored)).items():
            graph[child] = [pid for pid, _ in parents]
        key_of = {**key_of, **_keys(session, stored)}
    remaining = _kahn(graph)
    if remaining:
        names = ", ".join(f"'{key_of.get(n, n)}'" for n in sorted(remaining)[:20])
        raise Invalid(f"the parents form a cycle through records {names}")


def _kahn(graph: dict[int, list[int]]) -> set[int]:
    """Nodes of `graph` (node → parents; parents outside it ignored) left on cycles."""
    nodes = set(graph)
    pending = {n: sum(1 for p in graph[n] if p in nodes) for n in nodes}
    children: dict[int, list[int]] = {n: [] for n in nodes}
    for node in nodes:
        for parent in graph[node]:
            if parent in nodes:
                children[parent].append(node)
    ready = [n for n, count in pending.items() if count == 0]
    while ready:
        node = ready.pop()
        del pending[node]
        for child in children[node]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    return set(pending)


def _keys(session: Session | Connection, ids: Iterable[int]) -> dict[int, str]:
    rows = session.execute(select(REC.c.id, REC.c.key).where(REC.c.id.in_(sorted(ids))))
    return dict(rows.all())
