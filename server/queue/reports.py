"""The prebuilt statements run reports execute (see `runs.py`): lock the reported runs and
their records, end them, store results. Built once at import; each takes `b_*` parameters
and runs on the driver's cursor (`farmhand.server.prepared`).
"""

from __future__ import annotations

from sqlalchemy import JSON, Integer, Text, bindparam, cast, exists, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite

from farmhand import wire
from farmhand.server.db import unnest
from farmhand.server.ownership import RUN_OWNER
from farmhand.server.prepared import ListOf, in_list
from farmhand.server.tables import EDGE, REC, RESULT, RUN, UTCDateTime

_RUN_IDS = bindparam("b_runs", type_=ListOf(Integer))
# FOR UPDATE (PostgreSQL) in id order: a report racing an expiry, a claim or a cancel of the
# same record waits for it and then reads its outcome instead of overwriting it.
LOCK_RECORDS = (
    select(
        REC.c.id,
        REC.c.key,
        REC.c.state,
        REC.c.attempts,
        REC.c.max_attempts,
        REC.c.error,
        REC.c.campaign_id,
        REC.c.temporary_run_args.is_not(None).label("has_temporary"),
    )
    .where(REC.c.id.in_(select(RUN.c.record_id).where(in_list(RUN.c.id, _RUN_IDS))))
    .order_by(REC.c.id)
    .with_for_update()
)
# With the token of the run's agent: an agent token reports only on its own agents' runs.
LOCK_RUNS = (
    select(
        RUN.c.id,
        RUN.c.record_id,
        RUN.c.token,
        RUN.c.state,
        RUN.c.report,
        RUN.c.claimed_at,
        RUN.c.started_at,
        RUN_OWNER,
    )
    .where(in_list(RUN.c.id, _RUN_IDS))
    .order_by(RUN.c.id)
    .with_for_update()
)
_NOW = bindparam("b_now", type_=UTCDateTime)
# Records that end the same way (say, 32 completions) are written by one statement, which
# says which of them are parents: only those have children to unblock or fail. (Asked here,
# after the records are locked, not by LOCK_RECORDS: on PostgreSQL a child submitted while
# that statement waited for the lock is visible only to a later statement's snapshot.) The
# record's id as `record.id`: SQLAlchemy drops the table name in RETURNING on SQLite.
END_RECORDS = (
    update(REC)
    .where(in_list(REC.c.id, bindparam("b_ids", type_=ListOf(Integer))))
    .values(
        state=bindparam("b_state"),
        error=bindparam("b_error"),
        attempts=REC.c.attempts - bindparam("b_given_back"),
        agent_id=None,
        lease_expires_at=None,
        updated_at=_NOW,
    )
    .returning(
        REC.c.id,
        exists()
        .where(EDGE.c.parent_id == literal_column("record.id", Integer))
        .label("has_children"),
    )
)
_END_RUN_VALUES = (
    "state",
    "exit_code",
    "error",
    "stdout_tail",
    "stderr_tail",
    "report",
    "archive",
)
END_RUNS = (
    update(RUN)
    .where(RUN.c.id == bindparam("b_id"))
    .values(
        ended_at=_NOW,
        # The start, when it came with the report (or as it was): see runs._started_at.
        started_at=bindparam("b_started_at", type_=UTCDateTime),
        **{name: bindparam(f"b_{name}") for name in _END_RUN_VALUES},
    )
)
_ENDED = unnest(
    id=Integer,
    state=Text,
    started_at=UTCDateTime,
    exit_code=Integer,
    error=Text,
    stdout_tail=Text,
    stderr_tail=Text,
    report=Text,
    archive=Text,
)
END_RUNS_POSTGRESQL = (
    update(RUN)
    .where(RUN.c.id == _ENDED.c.id)
    .values(
        ended_at=_NOW,
        started_at=_ENDED.c.started_at,
        **{name: _ENDED.c[name] for name in _END_RUN_VALUES},
    )
)
# A failed attempt's record, ready again, waits out its retry delay (runs._retry_at).
RETRY_AT = (
    update(REC)
    .where(REC.c.id == bindparam("b_id"))
    .values(not_before=bindparam("b_not_before", type_=UTCDateTime))
)
START_RECORD = (
    update(REC)
    .where(REC.c.id == bindparam("b_id"))
    .values(state=bindparam("b_state"), updated_at=_NOW)
)
START_RUN = (
    update(RUN)
    .where(RUN.c.id == bindparam("b_id"))
    .values(state=wire.RunState.running.value, started_at=_NOW)
)


# INSERT … ON CONFLICT (record_id) DO UPDATE: a rerun's result replaces the earlier one.
STORE_RESULTS = sqlite.insert(RESULT).values(
    record_id=bindparam("b_record_id"),
    run_id=bindparam("b_run_id"),
    document=bindparam("b_document", type_=Text),  # JSON text already (no CAST in SQLite)
)
STORE_RESULTS = STORE_RESULTS.on_conflict_do_update(
    index_elements=[RESULT.c.record_id],
    set_={"run_id": STORE_RESULTS.excluded.run_id, "document": STORE_RESULTS.excluded.document},
)
_RESULTS = unnest(record_id=Integer, run_id=Integer, document=Text)
STORE_RESULTS_POSTGRESQL = postgresql.insert(RESULT).from_select(
    ["record_id", "run_id", "document"],
    select(_RESULTS.c.record_id, _RESULTS.c.run_id, cast(_RESULTS.c.document, JSON)),
)
STORE_RESULTS_POSTGRESQL = STORE_RESULTS_POSTGRESQL.on_conflict_do_update(
    index_elements=[RESULT.c.record_id],
    set_={
        "run_id": STORE_RESULTS_POSTGRESQL.excluded.run_id,
        "document": STORE_RESULTS_POSTGRESQL.excluded.document,
    },
)
