"""A campaign's results as a table: one row per record — key, state, each param, each field
of the result document (nested fields flattened with dots), attempts, runtime, error.

Rows are read page by page in record id order, each page in its own short read transaction,
so a million records stream in bounded memory and never hold a transaction open while the
client reads. CSV needs its columns first: a first pass reads only the result documents to
collect their field names (the params' names are on the campaign); JSON lines need none.
Names that collide are told apart: the fixed columns win, then params, and a result field
of the same name becomes `result.<name>`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlmodel import Session

from farmhand import wire
from farmhand.server.catalog import params, walk
from farmhand.server.errors import Invalid
from farmhand.server.tables import REC, RESULT, RUN

__all__ = ["FORMATS", "MAX_COLUMNS", "PAGE", "Table", "documents", "flatten", "sample_fields"]

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
#: Records read per transaction.
PAGE = 1000
#: Distinct result fields a CSV may have (a results.json with a field per record is not a
#: table; JSON lines has no such limit).
MAX_COLUMNS = 10_000
FIRST = ("key", "state")
LAST = ("attempts", "runtime_s", "error")

Reader = Callable[[], AbstractContextManager[Session]]


class Row(NamedTuple):
    """One record's row from `record`, its result document and its last run's times."""

    record: Any
    document: Any
    started_at: datetime | None
    ended_at: datetime | None


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}, "c": [1, 2]}` → `{"a.b": 1, "c": [1, 2]}`: objects flattened with
    dots, anything else (lists, scalars) kept as a value. A document that is not an object
    is one column, `result`."""
    if not isinstance(document, dict):
        return {} if document is None else {prefix.rstrip(".") or "result": document}
    out: dict[str, Any] = {}
    for name, value in document.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def documents(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """`{record id: its result document, flattened}` for those of `ids` that have one."""
    if not ids:
        return {}
    rows = session.execute(
        select(RESULT.c.record_id, RESULT.c.document).where(RESULT.c.record_id.in_(ids))
    )
    return {record_id: flatten(document) for record_id, document in rows}


def sample_fields(
    session: Session, campaign_id: int, *, records: int = 20, limit: int = 100
) -> list[str]:
    """The result field names (flattened) of the campaign's newest `records` done records,
    sorted, at most `limit`: what a page offers as columns, read in bounded time (result
    documents can be large, so few are read)."""
    newest = session.execute(
        select(REC.c.id)
        .where(REC.c.campaign_id == campaign_id, REC.c.state == wire.RecordState.done.value)
        .order_by(REC.c.id.desc())
        .limit(records)
    ).scalars()
    names: set[str] = set()
    for fields in documents(session, list(newest)).values():
        names.update(fields)
    return sorted(names)[:limit]


class Table:
    """The rows of one campaign's results, filtered by `state`, params conditions, and as the
    campaign page filters (`dataset`, `key_prefix`, `tag`): `walk.conditions` alike."""

    def __init__(
        self,
        reader: Reader,
        campaign_id: int,
        param_names: Sequence[str],
        *,
        state: wire.RecordState | None = None,
        where: Sequence[wire.Condition] = (),
        dataset: str | None = None,
        key_prefix: str | None = None,
        tag: str | None = None,
    ):
        self.reader = reader
        self.campaign_id = campaign_id
        self.params = [n for n in param_names if n not in FIRST + LAST]
        self.state = state
        self.where = list(where)
        self.chosen = {"dataset": dataset, "prefix": key_prefix, "tag": tag}

    def check(self) -> None:
        """Refuse a filter naming a param the campaign's records do not use (422)."""
        with self.reader() as session:
            params.check_names(session, self.where, self.campaign_id)

    def _pages(self, columns: Sequence[Any], *, runs: bool) -> Iterator[list[Any]]:
        with self.reader() as session:
            span = walk.bounds(session, walk.scope_of(self.campaign_id))
        if span is None:
            return
        after = span[0] - 1
        while True:
            with self.reader() as session:
                ids, reached = self._page_ids(session, after, span)
                if not ids:
                    return
                # The page's rows by primary key, table by table: plans no statistics can
                # turn into a join of whole tables.
                rows = session.execute(
                    select(REC.c.id, REC.c.run_id, *columns).where(REC.c.id.in_(ids))
                ).all()
                documents = dict(
                    session.execute(
                        select(RESULT.c.record_id, RESULT.c.document).where(
                            RESULT.c.record_id.in_(ids)
                        )
                    ).all()
                )
                times = {}
                if runs:
                    run_ids = [row.run_id for row in rows if row.run_id is not None]
                    times = {
                        rid: (started, ended)
                        for rid, started, ended in session.execute(
                            select(RUN.c.id, RUN.c.started_at, RUN.c.ended_at).where(
                                RUN.c.id.in_(run_ids)
                            )
                        )
                    }
            yield [
                Row(row, documents.get(row.id), *times.get(row.run_id, (None, None)))
                for row in sorted(rows, key=lambda r: r.id)
            ]
            after = ids[-1] if len(ids) == PAGE else reached

    def _page_ids(
        self, session: Session, after: int, span: tuple[int, int]
    ) -> tuple[list[int], int]:
        """The next page's record ids after `after`, filtered, and the id the walk reached
        (`walk.walk_ids`: bounded id ranges of `ix_record_campaign_id`)."""
        dialect = session.get_bind().dialect.name
        conditions = [REC.c.campaign_id == self.campaign_id]
        conditions += walk.conditions(dialect, state=self.state, where=self.where, **self.chosen)
        ids, reached = walk.walk_ids(session, conditions, span, after=after, limit=PAGE)
        return ids[:PAGE], reached

    def result_names(self) -> list[str]:
        """Every result field name (flattened) in the rows, sorted: the first pass of a CSV."""
        names: set[str] = set()
        for rows in self._pages([], runs=False):
            for row in rows:
                names.update(flatten(row.document))
            if len(names) > MAX_COLUMNS:
                raise Invalid(
                    f"the results have more than {MAX_COLUMNS} distinct fields; "
                    "ask for format=jsonl instead of csv"
                )
        return sorted(names)

    def _result_column(self, name: str) -> str:
        return f"result.{name}" if name in FIRST or name in LAST or name in self.params else name

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each record's row: fixed columns, its params, its result fields."""
        columns = [REC.c.key, REC.c.state, REC.c.params, REC.c.attempts, REC.c.error]
        for rows in self._pages(columns, runs=True):
            for row in rows:
                runtime = None
                if row.started_at is not None and row.ended_at is not None:
                    runtime = round((row.ended_at - row.started_at).total_seconds(), 3)
                record = row.record
                out: dict[str, Any] = {"key": record.key, "state": record.state}
                out.update({name: record.params.get(name) for name in self.params})
                for name, value in flatten(row.document).items():
                    out[self._result_column(name)] = value
                out.update(attempts=record.attempts, runtime_s=runtime, error=record.error)
                yield out

    def jsonl(self) -> Iterator[str]:
        """The rows as JSON lines, a page of lines per chunk."""
        lines: list[str] = []
        for row in self.rows():
            lines.append(json.dumps(row, separators=(",", ":")))
            if len(lines) >= PAGE:
                yield "\n".join(lines) + "\n"
                lines = []
        if lines:
            yield "\n".join(lines) + "\n"

    def csv(self) -> Iterator[str]:
        """The rows as CSV with a header; lists and objects as JSON text, None as empty."""
        fields = [self._result_column(name) for name in self.result_names()]
        header = [*FIRST, *self.params, *fields, *LAST]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for count, row in enumerate(self.rows(), start=1):
            writer.writerow([_cell(row.get(name)) for name in header])
            if count % PAGE == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value
