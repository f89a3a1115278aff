"""Honest skips: which submitted records whose keys already exist differ from the stored ones,
and in which fields — so a submission never skips a changed calculation without saying so.

Compared: command, params, run_args, priority, dataset, tags, inputs and parents (each
parent by record id: keys in the campaign are looked up, ids taken as they are).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import inputs, records
from farmhand.server.queue import graph
from farmhand.server.tables import REC

__all__ = ["FIELDS", "MAX_LISTED", "differing"]

FIELDS = ("command", "params", "run_args", "priority", "dataset", "tags", "inputs", "parents")
#: Records an answer names (the count covers them all).
MAX_LISTED = 100
_CHUNK = 500


def differing(
    session: Session, campaign_id: int, specs: Sequence[wire.RecordSpec]
) -> list[wire.SpecDiffers]:
    """For the stored records with these specs' keys, each whose spec differs, with the fields."""
    if not specs:
        return []
    by_key = {spec.key: spec for spec in specs}
    stored = {}
    keys = list(by_key)
    columns = (REC.c.id, REC.c.key, REC.c.command, REC.c.params, REC.c.run_args)
    columns += (REC.c.priority, REC.c.dataset, REC.c.tags)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = session.execute(
            select(*columns).where(REC.c.campaign_id == campaign_id, REC.c.key.in_(chunk))
        )
        stored.update({row.key: row for row in rows})
    ids = [row.id for row in stored.values()]
    staged = inputs.of_records(session, ids)
    parents = graph.parents_of(session, ids)
    parent_keys = {p for spec in specs for p in spec.parents if isinstance(p, str)}
    key_ids = records.ids_by_key(session, campaign_id, sorted(parent_keys))
    out = []
    for key, row in stored.items():
        spec = by_key[key]
        mine = {
            "command": spec.command,
            "params": spec.params,
            "run_args": spec.run_args,
            "priority": spec.priority,
            "dataset": spec.dataset,
            "tags": sorted(set(spec.tags)),
            "inputs": dict(spec.inputs),
            "parents": sorted(
                {p if isinstance(p, int) else key_ids.get(p, -1) for p in spec.parents}
            ),
        }
        theirs = {
            "command": row.command,
            "params": row.params or {},
            "run_args": row.run_args or {},
            "priority": row.priority,
            "dataset": row.dataset,
            "tags": sorted(set(row.tags or [])),
            "inputs": staged.get(row.id, {}),
            "parents": sorted(pid for pid, _ in parents.get(row.id, [])),
        }
        fields = [name for name in FIELDS if mine[name] != theirs[name]]
        if fields:
            out.append(wire.SpecDiffers(key=key, fields=fields))
    return sorted(out, key=lambda d: d.key)
