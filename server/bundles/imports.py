"""The import half of bundles: merge one chunk of another server's campaign into this one
(the orchestrator's `reconcile`). The same bundle twice changes nothing; overlapping
bundles give the union.

- The campaign is matched by name and version, and created with that version when missing.
- A record with a key new here is inserted with its runs. One that was leased on the source
  (claimed, running) arrives `ready`: there is no lease here. Its live run arrives
  `released` and the attempt it had spent is given back. Waiting and ready records are
  placed by their parents here (`dependencies.settle`).
- A record with the same key and the same spec (command, run_args, inputs, parents,
  dataset, tags): when the bundle's is done and ours is neither done nor leased, ours takes
  the bundle's state, attempts, result and runs (its children here are unblocked);
  otherwise it is left as it is.
- A record with the same key and another spec is reported (key and the fields that differ)
  and left untouched.

Imported runs get fresh ids and fresh random lease tokens, and no agent. Every snapshot the
chunk references must be on this server already (422 naming them; `farmhand import` uploads
them first). A chunk is one transaction: any problem refuses all of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from farmhand import wire
from farmhand.server.bundles import rows as bundle_rows
from farmhand.server.bundles.export import parents_by_record
from farmhand.server.catalog import campaigns, params, records
from farmhand.server.db import connection_of
from farmhand.server.errors import Invalid
from farmhand.server.queue import graph as dependencies
from farmhand.server.queue import lifecycle, matching
from farmhand.server.queue.leases import derive_run_args
from farmhand.server.queue.states import LEASED, UNFINISHED
from farmhand.server.storage import snapshots
from farmhand.server.tables import (
    CAMPAIGN,
    INPUT,
    REC,
    Campaign,
)

__all__ = ["SPEC_FIELDS", "import_chunk", "spec_of"]

S = wire.RecordState
#: What makes two records the same calculation.
SPEC_FIELDS = ("command", "params", "run_args", "inputs", "parents", "dataset", "tags")
_CHUNK = 500


@dataclass
class _Ours:
    id: int
    state: S
    spec: dict[str, Any]


def spec_of(
    *,
    command: str,
    params: dict[str, Any],
    run_args: dict[str, Any],
    inputs: dict[str, str],
    parents: list[tuple[str | None, str]],
    dataset: str | None,
    tags: list[str],
) -> dict[str, Any]:
    """A record's spec in a form two records can be compared by (`SPEC_FIELDS`); parents
    are (None, key) in the record's own campaign, else (`NAME:VERSION`, key)."""
    return {
        "command": command,
        "params": params or {},
        "run_args": run_args or {},
        "inputs": dict(inputs),
        "parents": sorted(set(parents), key=lambda p: (p[0] or "", p[1])),
        "dataset": dataset,
        "tags": sorted(set(tags)),
    }


def _bundle_spec(record: wire.BundleRecord) -> dict[str, Any]:
    parents = [(None, key) for key in record.parents]
    parents += [(p.campaign, p.key) for p in record.outside_parents]
    return spec_of(
        command=record.command,
        params=record.params,
        run_args=record.run_args,
        inputs=record.inputs,
        parents=parents,
        dataset=record.dataset,
        tags=record.tags,
    )


def import_chunk(
    session: Session, *, body: wire.BundleImport, now: datetime
) -> wire.BundleImported:
    """Merge `body` into this server's campaign (see the module doc)."""
    campaign, created, notes = _campaign(session, body.campaign)
    _check_keys(body.records)
    _check_snapshots(session, body.records)
    ours = _ours(session, campaign.id, [r.key for r in body.records])
    new: list[wire.BundleRecord] = []
    merge: list[tuple[_Ours, wire.BundleRecord]] = []
    answer = wire.BundleImported(campaign_id=campaign.id, campaign_created=created, notes=notes)
    for record in body.records:
        found = ours.get(record.key)
        if found is None:
            new.append(record)
            continue
        theirs = _bundle_spec(record)
        differs = [name for name in SPEC_FIELDS if found.spec[name] != theirs[name]]
        if differs:
            answer.conflicts.append(wire.BundleConflict(key=record.key, differs=differs))
        elif record.state == S.done and found.state != S.done and found.state not in LEASED:
            merge.append((found, record))
        else:
            answer.unchanged += 1
    edges = _parents(session, campaign.id, new, ours)
    ids = _insert_records(session, campaign, new, now)
    _link(session, edges, ids)
    bundle_rows.insert_inputs(session, [(ids[r.key], r) for r in new])
    for found, record in merge:
        bundle_rows.take_done(session, found.id, record, now)
    arrived = [(ids[r.key], r) for r in new] + [(found.id, r) for found, r in merge]
    bundle_rows.insert_runs(session, arrived, now)
    placed = [ids[r.key] for r in new if _arrival(r)[0] == S.ready]
    dependencies.settle(session, placed, now=now)
    if any(_arrival(r)[0] in UNFINISHED for r in new):
        lifecycle.reopen_campaigns(session, [campaign.id], now=now)
    done = [found.id for found, _ in merge]
    lifecycle.records_ended(session, done=done, failed={}, now=now, campaign_ids=[campaign.id])
    lifecycle.finish_campaigns(session, [campaign.id], now=now)
    if campaign.started_at is None and any(r.runs for _, r in arrived):
        session.execute(
            update(CAMPAIGN)
            .where(CAMPAIGN.c.id == campaign.id)
            .values(started_at=body.campaign.started_at or now)
        )
    answer.created, answer.merged = len(new), len(merge)
    return answer


def _campaign(session: Session, spec: wire.BundleCampaign) -> tuple[Campaign, bool, list[str]]:
    """The campaign `name`:`version`, created as the bundle has it when missing. Imports into
    one campaign take turns (see `_take_turns`)."""
    label = f"{spec.name}:{spec.version}"
    _take_turns(session, label)
    notes = []
    row = _find_campaign(session, spec)
    created = False
    if row is None:
        based_on_id = None
        if spec.based_on:
            try:
                based_on_id = campaigns.find(session, spec.based_on).id
            except Invalid:
                notes.append(f"{label} is based on {spec.based_on}, which is not on this server")
        values = {
            "name": spec.name,
            "version": spec.version,
            "software": spec.software,
            "defaults": spec.defaults,
            "based_on_id": based_on_id,
            "created_at": spec.created_at,
            "started_at": spec.started_at,
            "finished_at": spec.finished_at,
        }
        dialect = postgresql if _on_postgresql(session) else sqlite
        made = session.execute(
            dialect.insert(CAMPAIGN)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[CAMPAIGN.c.name, CAMPAIGN.c.version])
            .returning(CAMPAIGN.c.id)
        )
        created = made.first() is not None
        row = _find_campaign(session, spec)
        assert row is not None
    if not created:
        for name, mine in (("software", row.software), ("defaults", row.defaults or {})):
            if getattr(spec, name) != mine:
                notes.append(f"{label} here has other {name} than the bundle's; kept this one")
    return row, created, notes


def _on_postgresql(session: Session) -> bool:
    return connection_of(session).dialect.name == "postgresql"


def _take_turns(session: Session, label: str) -> None:
    """On PostgreSQL, a transaction-scoped advisory lock per campaign: two imports into one
    campaign would otherwise both insert a new key and one would fail. An advisory lock, not
    the campaign row: reports and claims lock records before the campaign row, and so do
    imports after this (SQLite has one writer at a time anyway)."""
    if _on_postgresql(session):
        digest = hashlib.sha256(f"farmhand-import {label}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))


def _find_campaign(session: Session, spec: wire.BundleCampaign) -> Campaign | None:
    stmt = (
        select(Campaign)
        .where(Campaign.name == spec.name, Campaign.version == spec.version)
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).scalar_one_or_none()


def _check_keys(records: list[wire.BundleRecord]) -> None:
    seen: set[str] = set()
    for record in records:
        if record.key in seen:
            raise Invalid(f"key '{record.key}' appears twice in this import")
        seen.add(record.key)


def _check_snapshots(session: Session, records: list[wire.BundleRecord]) -> None:
    """422 unless every snapshot the records reference is on this server."""
    absent = snapshots.missing(session, set().union(*(r.snapshots() for r in records)))
    if absent:
        more = ", …" if len(absent) > 5 else ""
        raise Invalid(
            f"{len(absent)} snapshot(s) the records reference are not on this server "
            f"({', '.join(absent[:5])}{more}); upload them first (farmhand import does)"
        )


def _ours(session: Session, campaign_id: int, keys: list[str]) -> dict[str, _Ours]:
    """This server's records of the campaign with these keys, with their specs; locked (on
    PostgreSQL), so a claim cannot lease one between this look and the merge."""
    rows = []
    for start in range(0, len(keys), _CHUNK):
        rows += session.execute(
            select(REC)
            .where(REC.c.campaign_id == campaign_id, REC.c.key.in_(keys[start : start + _CHUNK]))
            .order_by(REC.c.id)
            .with_for_update()
        ).all()
    ids = [row.id for row in rows]
    inputs: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for rid, path, sha in session.execute(
            select(INPUT.c.record_id, INPUT.c.path, INPUT.c.sha256).where(
                INPUT.c.record_id.in_(chunk)
            )
        ):
            inputs.setdefault(rid, {})[path] = sha
    parents = parents_by_record(session, ids, campaign_id)
    return {
        row.key: _Ours(
            id=row.id,
            state=S(row.state),
            spec=spec_of(
                command=row.command,
                params=row.params,
                run_args=row.run_args,
                inputs=inputs.get(row.id, {}),
                parents=parents.get(row.id, []),
                dataset=row.dataset,
                tags=row.tags,
            ),
        )
        for row in rows
    }


def _parents(
    session: Session, campaign_id: int, new: list[wire.BundleRecord], ours: dict[str, _Ours]
) -> dict[str, list[Any]]:
    """Each new record's parents: keys of this campaign (new in this chunk, resolved after
    the insert) or ids of records here; 422 naming any this server lacks."""
    in_chunk = {r.key for r in new}
    wanted = {p for r in new for p in r.parents if p not in in_chunk and p not in ours}
    here = {key: found.id for key, found in ours.items()}
    here.update(records.ids_by_key(session, campaign_id, sorted(wanted)))
    outside = _outside(session, {(p.campaign, p.key) for r in new for p in r.outside_parents})
    problems, edges = [], {}
    for record in new:
        refs: list[Any] = []
        unknown = []
        for key in dict.fromkeys(record.parents):
            refs.append(key if key in in_chunk else here.get(key))
            if refs[-1] is None:
                unknown.append(f"'{key}'")
        for p in record.outside_parents:
            refs.append(outside.get((p.campaign, p.key)))
            if refs[-1] is None:
                unknown.append(f"'{p.key}' of campaign {p.campaign}")
        if unknown:
            problems.append(
                f"record '{record.key}' has parents not on this server: {', '.join(unknown[:5])}"
            )
        elif refs:
            edges[record.key] = refs
    if problems:
        raise Invalid("; ".join(problems[:10]) + " (import the parents first)")
    return edges


def _link(session: Session, edges: dict[str, list[Any]], ids: dict[str, int]) -> None:
    """Store the new records' edges (parent keys new in this chunk resolved to their ids)."""
    if not edges:
        return
    linked = {
        ids[key]: [ids[p] if isinstance(p, str) else p for p in parents]
        for key, parents in edges.items()
    }
    dependencies.check_acyclic(linked, {rid: key for key, rid in ids.items()}, session, set())
    dependencies.link(session, [(child, p) for child, ps in linked.items() for p in ps])


def _outside(session: Session, refs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids of records in other campaigns, by (`NAME:VERSION`, key)."""
    found = {}
    for label, key in refs:
        name, _, version = label.partition(":")
        if not version.isdigit():
            continue
        rid = session.execute(
            select(REC.c.id)
            .join(CAMPAIGN, CAMPAIGN.c.id == REC.c.campaign_id)
            .where(CAMPAIGN.c.name == name, CAMPAIGN.c.version == int(version), REC.c.key == key)
        ).scalar()
        if rid is not None:
            found[(label, key)] = rid
    return found


def _arrival(record: wire.BundleRecord) -> tuple[S, int]:
    """The state and attempts a new record arrives with: a leased one is ready (no lease
    here) and its live attempt is given back; a waiting one is placed by its parents."""
    if record.state in LEASED:
        return S.ready, max(0, record.attempts - 1)
    if record.state == S.waiting:
        return S.ready, record.attempts
    return record.state, record.attempts


def _insert_records(
    session: Session,
    campaign: Campaign,
    new: list[wire.BundleRecord],
    now: datetime,
) -> dict[str, int]:
    if not new:
        return {}
    params.note_names(session, campaign, [record.params for record in new])
    rows = []
    for record in new:
        where = f"record '{record.key}'"
        state, attempts = _arrival(record)
        rows.append(
            {
                "campaign_id": campaign.id,
                "key": record.key,
                "command": record.command,
                "params": record.params,
                "priority": record.priority,
                "run_args": record.run_args,
                "temporary_run_args": record.temporary_run_args,
                "dataset": record.dataset,
                "tags": record.tags,
                **matching.columns(derive_run_args(campaign.defaults, record.run_args), where),
                "state": state.value,
                "attempts": attempts,
                "max_attempts": record.max_attempts,
                "error": record.error if state == record.state else None,
                "created_at": record.created_at,
                "updated_at": now,
            }
        )
    made = session.execute(
        insert(REC).returning(REC.c.id, REC.c.key, sort_by_parameter_order=True), rows
    )
    return {key: rid for rid, key in made}
