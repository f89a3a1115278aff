"""The bulk submission's insert: every new record of a request in one statement,
`INSERT … ON CONFLICT (campaign_id, key) DO NOTHING RETURNING key`, its rows sent at once.

On PostgreSQL the rows travel as one array per column, read by `unnest(…)`; on SQLite as
one JSON array of arrays, read by `json_each`/`json_extract` in C (an executemany converted
each row's values in Python: half the server's CPU of a 100,000-record submission). A test
holds what both store equal to SQLAlchemy's typed insert
(tests/server/catalog/submission/test_submit.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, Text, bindparam, cast, func, literal, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from farmhand import wire
from farmhand.server.db import unnest
from farmhand.server.tables import REC, UTCDateTime

__all__ = ["COLUMNS", "insert_new"]


def insert_new(
    conn: Connection, rows: list[dict[str, Any]], *, campaign_id: int, now: datetime
) -> set[str]:
    """Insert `rows` (one dict per record holding at least `COLUMNS`, JSON columns as text)
    as ready records of the campaign; the keys that were new (the others were there)."""
    if not rows:
        return set()
    values = [[row[name] for name in COLUMNS] for row in rows]
    same = {"b_campaign": campaign_id, "b_now": now}
    if conn.dialect.name == "postgresql":
        columns = zip(COLUMNS, zip(*values, strict=True), strict=True)
        arrays = {f"b_{name}": list(column) for name, column in columns}
        inserted = conn.execute(_INSERT_POSTGRESQL, {**arrays, **same})
    else:
        rows_json = json.dumps(values, allow_nan=False)
        inserted = conn.execute(_INSERT_SQLITE, {"b_rows": rows_json, **same})
    return set(inserted.scalars())


# The columns a submission sets, with their types for PostgreSQL's unnest(); JSON columns
# travel as text.
_SPEC_TYPES: dict[str, Any] = {
    "key": Text,
    "command": Text,
    "params": Text,
    "priority": Integer,
    "run_args": Text,
    "dataset": Text,
    "tags": Text,
    "runner": Text,
    "cores": Float,
    "gpus": Integer,
    "memory_mb": Integer,
    "walltime": Float,
    "max_attempts": Integer,
}
COLUMNS = tuple(_SPEC_TYPES)
_JSON_COLUMNS = ("run_args", "tags")
_JSONB_COLUMNS = ("params",)  # JSONB on PostgreSQL
_NEW_RECORD = {
    "campaign_id": bindparam("b_campaign", type_=Integer),
    "state": literal(wire.RecordState.ready.value),
    "attempts": literal(0),
    "created_at": bindparam("b_now", type_=UTCDateTime),
    "updated_at": bindparam("b_now", type_=UTCDateTime),
}
# The WHERE lets SQLite's parser tell ON CONFLICT from a join's ON.
_ROWS = func.json_each(bindparam("b_rows", type_=Text)).table_valued("value")
_INSERT_SQLITE = (
    sqlite.insert(REC)
    .from_select(
        [*COLUMNS, *_NEW_RECORD],
        select(
            *(func.json_extract(_ROWS.c.value, f"$[{i}]") for i in range(len(COLUMNS))),
            *_NEW_RECORD.values(),
        ).where(true()),
    )
    .on_conflict_do_nothing(index_elements=[REC.c.campaign_id, REC.c.key])
    .returning(REC.c.key)
)
_SPECS = unnest(**_SPEC_TYPES)
_INSERT_POSTGRESQL = (
    postgresql.insert(REC)
    .from_select(
        [*COLUMNS, *_NEW_RECORD],
        select(
            *(
                cast(_SPECS.c[name], JSON)
                if name in _JSON_COLUMNS
                else cast(_SPECS.c[name], postgresql.JSONB)
                if name in _JSONB_COLUMNS
                else _SPECS.c[name]
                for name in COLUMNS
            ),
            *_NEW_RECORD.values(),
        ),
    )
    .on_conflict_do_nothing(index_elements=[REC.c.campaign_id, REC.c.key])
    .returning(REC.c.key)
)
