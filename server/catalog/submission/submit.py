"""Bulk submission: new records, skip / force / force_ignores_success, parents.

A key already in the campaign is skipped by default. With `force`, a record whose stored spec
differs from the submitted one (`differs`: command, params, run_args, …) takes the new spec
and is queued again with fresh attempts (a live run of it is cancelled; its agent hears at the
next heartbeat); a done one only when `force_ignores_success` is given too. An unchanged
record is never replaced: rerunning what did not change is `retry`'s job. The whole request is
one transaction, the campaign it may create included: an unknown parent, a bad run_arg or a
cycle refuses all of it, naming the keys. A dry run is the same transaction rolled back by
the route (its input snapshots need not be uploaded yet).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    delete,
    insert,
    select,
    update,
)
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import campaigns, inputs, params, records
from farmhand.server.catalog.submission import differs, inserts, parents
from farmhand.server.db import connection_of
from farmhand.server.errors import Invalid, NotFound
from farmhand.server.queue import graph as dependencies
from farmhand.server.queue import lifecycle, matching
from farmhand.server.queue.leases import derive_run_args
from farmhand.server.tables import (
    REC,
    RESULT,
    Campaign,
)

S = wire.RecordState
_CHUNK = 500
FINISHED = frozenset({S.failed, S.cancelled, S.orphaned})


@dataclass
class _Existing:
    id: int
    state: S


def decide(state: S, *, changed: bool, force: bool, force_ignores_success: bool) -> str:
    """What a submission does to an existing record: `skip` or `replace` (the table test's
    subject: every flag combination against every state, changed or not)."""
    if not force or not changed:
        return "skip"
    if state == S.done and not force_ignores_success:
        return "skip"
    return "replace"


def create(
    session: Session,
    *,
    body: wire.RecordsCreate,
    now: datetime,
    default_max_attempts: int,
    max_command_length: int,
    created_by: int | None = None,
) -> wire.RecordsCreated:
    """Insert the records whose keys are new; skip or replace the others (see module doc).
    A campaign created here (`campaign`) belongs to `created_by` (the caller's token)."""
    if body.force_ignores_success and not body.force:
        raise Invalid("force_ignores_success needs force as well")
    campaign = _campaign(session, body, created_by)
    _check_specs(body.records, max_command_length)
    if not body.dry_run:
        inputs.check_stored(session, body.records)
    default = matching.max_attempts(
        campaign.defaults, default_max_attempts, f"campaign '{campaign.name}'"
    )
    if not body.force and not any(spec.parents for spec in body.records):
        answer, created = _insert_new(session, campaign, body.records, default, now)
        if created and any(spec.inputs for spec in body.records) and not body.dry_run:
            inputs.attach(session, campaign.id, [s for s in body.records if s.key in created])
        _note_names(session, campaign, body)
        return _stamp(answer, campaign, body)
    existing = _existing(session, campaign.id, [spec.key for spec in body.records])
    found = differs.differing(
        session, campaign.id, [spec for spec in body.records if spec.key in existing]
    )
    changed = {d.key for d in found}
    if body.force:
        _lock(session, existing, changed)
    new, replace, skipped = [], [], []
    for spec in body.records:
        old = existing.get(spec.key)
        if old is None:
            new.append(spec)
        elif decide(old.state, changed=spec.key in changed, **_flags(body)) == "replace":
            replace.append(spec)
        else:
            skipped.append(spec.key)
    rows = {
        spec.key: _row(spec, campaign, default, now) for spec in (*new, *replace)
    }  # validated before anything is written
    links = parents.resolve(session, campaign.id, [*new, *replace], existing)
    ids = _insert(session, new, rows, with_ids=bool(links))
    ids.update({spec.key: existing[spec.key].id for spec in replace})
    if replace:
        _replace(session, [existing[s.key] for s in replace], rows, now)
    if (any(spec.inputs for spec in body.records) or replace) and not body.dry_run:
        inputs.attach(
            session, campaign.id, [*new, *replace], replaced=[existing[s.key].id for s in replace]
        )
    if links:
        parents.link(session, campaign.id, links, ids, {existing[s.key].id for s in replace})
        dependencies.settle(session, [ids[k] for k in links], now=now)
    if replace:
        reopened_from = [existing[s.key].id for s in replace if existing[s.key].state in FINISHED]
        keys = {existing[s.key].id: s.key for s in replace}
        dependencies.reopen(session, reopened_from, keys, now=now)
    _note_names(session, campaign, body)
    if new or replace:
        lifecycle.reopen_campaigns(session, [campaign.id], now=now)
    kept = set(skipped)
    still = [d for d in found if d.key in kept]
    answer = wire.RecordsCreated(
        created=len(new),
        replaced=len(replace),
        replaced_keys=[spec.key for spec in replace[:100]],
        skipped=len(skipped),
        skipped_keys=skipped[:100],
        differing=len(still),
        differs=still[: differs.MAX_LISTED],
    )
    return _stamp(answer, campaign, body)


def _campaign(session: Session, body: wire.RecordsCreate, created_by: int | None) -> Campaign:
    """The campaign the records go to: `campaign_id`'s (404 if none), or `campaign` created
    here, in the submission's transaction."""
    if body.campaign is not None:
        made = campaigns.create(session, spec=body.campaign, created_by=created_by)
        row = session.get(Campaign, made.id)
        assert row is not None  # flushed by create
        return row
    row = session.get(Campaign, body.campaign_id)
    if row is None:
        raise NotFound(f"campaign {body.campaign_id} does not exist")
    return row


def _stamp(
    answer: wire.RecordsCreated, campaign: Campaign, body: wire.RecordsCreate
) -> wire.RecordsCreated:
    """`answer` with the campaign it created (not in a dry run: that one is never kept) and
    whether it was a dry run."""
    if body.campaign is not None and not body.dry_run:
        answer.created_campaign = campaign.id
    answer.dry_run = body.dry_run
    return answer


def _insert_new(
    session: Session,
    campaign: Campaign,
    specs: Sequence[wire.RecordSpec],
    default: int,
    now: datetime,
) -> tuple[wire.RecordsCreated, set[str]]:
    """The common bulk case (no force, no parents): one `INSERT … ON CONFLICT DO NOTHING
    RETURNING key`; the keys it returns were created (returned too), the others were there
    already. No lookup first, and a concurrent submission of the same keys waits, then skips
    them."""
    rows = []
    for spec in specs:
        row = _row(spec, campaign, default, now)
        # Most records carry no run_args or tags of their own: skip the encoder for them.
        row.update(
            run_args=json.dumps(spec.run_args) if spec.run_args else "{}",
            tags=json.dumps(spec.tags) if spec.tags else "[]",
            params=json.dumps(spec.params) if spec.params else "{}",
        )
        rows.append(row)
    created = inserts.insert_new(connection_of(session), rows, campaign_id=campaign.id, now=now)
    if created:
        lifecycle.reopen_campaigns(session, [campaign.id], now=now)
    skipped = [spec for spec in specs if spec.key not in created]
    answer = _with_differs(
        session,
        campaign.id,
        skipped,
        wire.RecordsCreated(
            created=len(created),
            skipped=len(skipped),
            skipped_keys=[spec.key for spec in skipped[:100]],
        ),
    )
    return answer, created


def _with_differs(
    session: Session,
    campaign_id: int,
    skipped: list[wire.RecordSpec],
    answer: wire.RecordsCreated,
) -> wire.RecordsCreated:
    """`answer` with the skipped records whose spec differs from the stored one."""
    found = differs.differing(session, campaign_id, skipped)
    answer.differing = len(found)
    answer.differs = found[: differs.MAX_LISTED]
    return answer


def _note_names(session: Session, campaign: Campaign, body: wire.RecordsCreate) -> None:
    """Add the records' param names to the campaign's, after every record and run lock.

    Writing the campaign row locks it (PostgreSQL), and every writer takes the campaign
    last: records, then runs, then campaigns (queue/lifecycle.py). A replacement locks its
    record and then its runs; a report of such a run holds them and then locks the campaign
    to decide `finished_at`. Written first, the campaign made a cycle with that report, and
    PostgreSQL aborted one of them (DeadlockDetected, a 500; test_submit_locking.py)."""
    params.note_names(session, campaign, [spec.params for spec in body.records])


def _flags(body: wire.RecordsCreate) -> dict[str, bool]:
    return {"force": body.force, "force_ignores_success": body.force_ignores_success}


def _check_specs(specs: Sequence[wire.RecordSpec], max_command_length: int) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.key in seen:
            raise Invalid(f"key '{spec.key}' appears twice in this request")
        seen.add(spec.key)
        if len(spec.command) > max_command_length:
            raise Invalid(
                f"record '{spec.key}': command is {len(spec.command)} characters; "
                f"the limit is {max_command_length}"
            )
        if spec.key in spec.parents:
            raise Invalid(f"the parents form a cycle through records '{spec.key}'")


def _existing(session: Session, campaign_id: int, keys: list[str]) -> dict[str, _Existing]:
    found: dict[str, _Existing] = {}
    for start in range(0, len(keys), _CHUNK):
        rows = session.execute(
            select(REC.c.key, REC.c.id, REC.c.state).where(
                REC.c.campaign_id == campaign_id, REC.c.key.in_(keys[start : start + _CHUNK])
            )
        )
        found.update({key: _Existing(rid, S(state)) for key, rid, state in rows})
    return found


def _lock(session: Session, existing: dict[str, _Existing], keys: set[str]) -> None:
    """Lock (PostgreSQL) the records a forced submission may replace, in id order, and read
    their states again: a report or an expiry ending one meanwhile is waited for, and the
    decision sees the state it left (done: skipped unless force_ignores_success). Records,
    then their runs (`_replace`), then the campaign (`_note_names`): every writer's order."""
    ids, state_of = sorted(existing[key].id for key in keys), {}
    for start in range(0, len(ids), _CHUNK):  # chunks of the sorted ids: still in id order
        chunk = ids[start : start + _CHUNK]
        locked = select(REC.c.id, REC.c.state).where(REC.c.id.in_(chunk)).order_by(REC.c.id)
        state_of.update(session.execute(locked.with_for_update()).all())
    for key in keys:
        old = existing[key]
        old.state = S(state_of.get(old.id, old.state))


def _row(spec: wire.RecordSpec, campaign: Campaign, default: int, now: datetime) -> dict:
    where = f"record '{spec.key}'"
    effective = derive_run_args(campaign.defaults, spec.run_args)
    matching.retry_delay(effective, where)  # checked now, read after a failed attempt
    return {
        "campaign_id": campaign.id,
        "key": spec.key,
        "command": spec.command,
        "params": spec.params,
        "priority": spec.priority,
        "run_args": spec.run_args,
        "dataset": spec.dataset,
        "tags": spec.tags,
        **matching.columns(effective, where),
        "state": S.ready.value,
        "attempts": 0,
        "max_attempts": matching.max_attempts(spec.run_args, default, where),
        "created_at": now,
        "updated_at": now,
    }


def _insert(
    session: Session, specs: list[wire.RecordSpec], rows: dict[str, dict], *, with_ids: bool
) -> dict[str, int]:
    if not specs:
        return {}
    values = [rows[spec.key] for spec in specs]
    if not with_ids:  # the common bulk case: no ids needed, the fastest insert
        session.execute(insert(REC), values)
        return {}
    made = session.execute(
        insert(REC).returning(REC.c.id, REC.c.key, sort_by_parameter_order=True), values
    )
    return {key: rid for rid, key in made}


def _replace(session: Session, olds: list[_Existing], rows: dict[str, dict], now: datetime) -> None:
    """Give existing records their new spec and queue them again with fresh attempts."""
    ids = sorted(old.id for old in olds)
    # Lock order: records (locked by `_lock`), then their runs; the campaign row last.
    records.stop_live_runs(
        session, record_ids=ids, now=now, reason="record replaced by a forced submission"
    )
    session.execute(delete(RESULT).where(RESULT.c.record_id.in_(ids)))
    dependencies.unlink(session, ids)
    key_of = session.execute(select(REC.c.id, REC.c.key).where(REC.c.id.in_(ids))).all()
    for rid, key in key_of:
        row = dict(rows[key])
        for fixed in ("campaign_id", "key", "created_at"):
            row.pop(fixed)
        session.execute(
            update(REC)
            .where(REC.c.id == rid)
            .values(
                **row,
                error=None,
                temporary_run_args=None,
                agent_id=None,
                run_id=None,
                lease_expires_at=None,
                not_before=None,
                end_seq=None,
            )
        )
