"""A submission's parents: each reference checked to exist (422 naming the unknown ones), then
linked once the records have ids, refusing a cycle."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import records
from farmhand.server.errors import Invalid
from farmhand.server.queue import graph as dependencies
from farmhand.server.tables import REC

__all__ = ["link", "resolve"]

_CHUNK = 500


def resolve(
    session: Session,
    campaign_id: int,
    specs: Sequence[wire.RecordSpec],
    stored: Collection[str],
) -> dict[str, list[str | int]]:
    """Each spec with parents → its parent references (keys of the request, of `stored` or of
    the campaign; record ids), checked to exist: Invalid (422) naming the unknown ones."""
    with_parents = {spec.key: list(dict.fromkeys(spec.parents)) for spec in specs if spec.parents}
    if not with_parents:
        return {}
    in_request = {spec.key for spec in specs}
    keys = {p for refs in with_parents.values() for p in refs if isinstance(p, str)}
    on_server = records.ids_by_key(session, campaign_id, sorted(keys))
    known_keys = in_request | set(stored) | set(on_server)
    ids = sorted({p for refs in with_parents.values() for p in refs if isinstance(p, int)})
    known_ids: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        known_ids.update(session.execute(select(REC.c.id).where(REC.c.id.in_(chunk))).scalars())
    problems = []
    for key, refs in with_parents.items():
        unknown = [
            repr(r)
            for r in refs
            if (r not in known_keys if isinstance(r, str) else r not in known_ids)
        ]
        if unknown:
            problems.append(f"record '{key}' has unknown parents {', '.join(unknown[:10])}")
    if problems:
        raise Invalid("; ".join(problems[:10]))
    return with_parents


def link(
    session: Session,
    campaign_id: int,
    parents: dict[str, list[str | int]],
    ids: dict[str, int],
    replaced: set[int],
) -> None:
    """Record the edges of `parents` (child key → references) between the records of `ids`
    (key → id, the request's) and their parents; a cycle is refused (422)."""
    keys = sorted({p for refs in parents.values() for p in refs if isinstance(p, str)} - set(ids))
    resolved = {**records.ids_by_key(session, campaign_id, keys), **ids}
    edges = {
        ids[key]: [r if isinstance(r, int) else resolved[r] for r in refs]
        for key, refs in parents.items()
    }
    dependencies.check_acyclic(edges, {rid: key for key, rid in ids.items()}, session, replaced)
    dependencies.link(session, [(child, p) for child, ps in edges.items() for p in ps])
