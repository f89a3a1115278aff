"""The hot statements, compiled once per dialect and run on the driver's cursor.

SQLAlchemy Core costs more CPU to execute a statement (an execution context, parameter and
result processing, a compiled-cache lookup: 30-60 µs) than SQLite takes to run a claim's. So
the agents' hot path (claims, starts, reports) writes its statements in Core as everywhere
else, and runs them here: each is compiled once per dialect to its SQL text and parameter
order (`Prepared`), and executed on the DBAPI cursor of the transaction's connection, with
its values converted the way the column types do (datetimes by `UTCDateTime.binder`, which a
test holds equal to SQLAlchemy's own processing, so the stored bytes do not change).

A list goes in as one parameter (`in_list`): `IN (SELECT value FROM json_each(?))` on SQLite,
`= ANY(%(p)s)` on PostgreSQL, one SQL text whatever its length (an expanding IN renders one
placeholder per item and so a new statement for each length).

The transaction stays the caller's: a statement run on a connection outside one begins it
as SQLAlchemy would, and a driver error goes through SQLAlchemy's own handling (wrapped as
`sqlalchemy.exc.DBAPIError`, a lost connection invalidated). Statements run here skip
SQLAlchemy's `before_cursor_execute` events and `echo` logging.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, JSON, TypeDecorator
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

from farmhand.server.columns import UTCDateTime

__all__ = [
    "ListOf",
    "Prepared",
    "compiled_for",
    "execute",
    "execute_many",
    "execute_rows",
    "fetch",
    "in_list",
]

Convert = Callable[[Any], Any]


class ListOf(TypeDecorator):
    """A list bound as one parameter: a PostgreSQL array of `item`, JSON text on SQLite."""

    impl = JSON
    cache_ok = True

    def __init__(self, item: Any) -> None:
        super().__init__()
        self.item = item

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(self.item))
        return dialect.type_descriptor(JSON())


class in_list(FunctionElement):
    """`in_list(column, bindparam("b_ids", type_=ListOf(Integer)))`: `column` is one of the
    list's items, with one SQL text for every length of the list."""

    type = NullType()  # not Boolean: SQLite would render `… = 1` after it
    inherit_cache = True
    name = "in_list"


@compiles(in_list)
def _in_json_each(element: in_list, compiler: Any, **kw: Any) -> str:
    column, items = element.clauses
    listed = compiler.process(items, **kw)
    return f"{compiler.process(column, **kw)} IN (SELECT value FROM json_each({listed}))"


@compiles(in_list, "postgresql")
def _any(element: in_list, compiler: Any, **kw: Any) -> str:
    column, items = element.clauses
    return f"{compiler.process(column, **kw)} = ANY ({compiler.process(items, **kw)})"


@dataclass(frozen=True)
class Prepared:
    """One statement compiled for one dialect: its SQL, its parameters in the driver's order
    (name, fixed value, conversion), and its result columns (names, conversions)."""

    sql: str
    positional: bool
    params: tuple[tuple[str, Any, Convert | None], ...]
    row: Any  # a namedtuple class of the result columns (None: no result)
    loaders: tuple[tuple[int, Convert], ...]

    def args(self, given: dict[str, Any]) -> Any:
        """The driver's parameters from `given` (`b_*` names) and the statement's own."""
        return self.args_many([given])[0]

    def args_many(self, rows: list[dict[str, Any]], same: dict[str, Any] | None = None) -> Any:
        """The driver's parameters for each row, the values in `same` (shared by all rows)
        and the statement's own converted once."""
        same = same or {}
        template: list[Any] = []
        per_row = []
        for index, (name, fixed, convert) in enumerate(self.params):
            if fixed is _GIVEN and name not in same:
                template.append(None)
                per_row.append((index, name, convert))
                continue
            value = same[name] if fixed is _GIVEN else fixed
            template.append(value if convert is None or value is None else convert(value))
        out = []
        for row in rows:
            values = template.copy()
            for index, name, convert in per_row:
                value = row[name]
                values[index] = value if convert is None or value is None else convert(value)
            out.append(values)
        if self.positional:
            return out
        names = [name for name, _, _ in self.params]
        return [dict(zip(names, values, strict=True)) for values in out]

    def shape(self, found: list[Sequence[Any]]) -> list[Any]:
        """Result rows as named tuples, their values converted."""
        if not self.loaders:
            return [self.row._make(row) for row in found]
        out = []
        for row in found:
            values = list(row)
            for index, load in self.loaders:
                values[index] = load(values[index])
            out.append(self.row._make(values))
        return out


_GIVEN = object()  # a parameter the caller gives (not one the statement fixes)
_cache: dict[tuple[int, type, str], tuple[Any, Prepared]] = {}


def compiled_for(statement: Any, dialect: Dialect) -> Prepared:
    """`statement` compiled for `dialect`, once per statement and kind of dialect: for
    statements built once (module constants, cached builders), which it keeps alive."""
    key = (id(statement), type(dialect), dialect.paramstyle)
    found = _cache.get(key)
    if found is None or found[0] is not statement:
        found = _cache[key] = (statement, _prepare(statement, dialect))
    return found[1]


def _prepare(statement: Any, dialect: Dialect) -> Prepared:
    compiled = statement.compile(dialect=dialect)
    sql = str(compiled)
    if "POSTCOMPILE" in sql:
        raise ValueError(
            f"an expanding parameter needs one SQL text per length; use in_list: {sql}"
        )
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    names = compiled.positiontup if compiled.positional else sorted(binds)
    params = []
    for name in names:
        bind = binds[name]
        fixed = _GIVEN if bind.required else bind.effective_value
        convert = _binder(bind.type, dialect)
        if fixed is not _GIVEN and convert is not None and fixed is not None:
            fixed, convert = convert(fixed), None
        params.append((name, fixed, convert))
    columns = list(getattr(statement, "exported_columns", ()))
    row = namedtuple("Row", [c.key for c in columns]) if columns else None  # type: ignore[misc]
    loaders = [(i, _loader(c.type, dialect)) for i, c in enumerate(columns)]
    return Prepared(
        sql=sql,
        positional=compiled.positional,
        params=tuple(params),
        row=row,
        loaders=tuple((i, load) for i, load in loaders if load is not None),
    )


def _binder(kind: Any, dialect: Dialect) -> Convert | None:
    """How a value of SQL type `kind` goes to the driver (None: as it is)."""
    if isinstance(kind, UTCDateTime):
        return UTCDateTime.binder(dialect.name)
    if isinstance(kind, ListOf):
        return list if dialect.name == "postgresql" else json.dumps
    if isinstance(kind, ARRAY):  # PostgreSQL: a list of items, each converted
        item = _binder(kind.item_type, dialect)
        return list if item is None else lambda values: [item(v) for v in values]
    return kind.dialect_impl(dialect).bind_processor(dialect)


def _loader(kind: Any, dialect: Dialect) -> Convert | None:
    """How a value of SQL type `kind` comes back from the driver (None: as it is)."""
    if isinstance(kind, UTCDateTime):
        return UTCDateTime.loader(dialect.name)
    return kind.dialect_impl(dialect).result_processor(dialect, None)


def _cursor(conn: Connection) -> Any:
    """A cursor in the connection's transaction (begun here, as SQLAlchemy would, if the
    caller has not yet)."""
    if not conn.in_transaction():
        conn.begin()
    return conn.connection.cursor()


def fetch(conn: Connection, statement: Any, params: dict[str, Any]) -> list[Any]:
    """Run `statement` with `params` (`b_*` names); its result rows as named tuples."""
    this = compiled_for(statement, conn.dialect)
    cursor = _cursor(conn)
    args = this.args(params)
    try:
        cursor.execute(this.sql, args)
        found = cursor.fetchall()
    except BaseException as exc:
        conn._handle_dbapi_exception(exc, this.sql, args, cursor, None)
    return this.shape(found)


def execute(conn: Connection, statement: Any, params: dict[str, Any]) -> int:
    """Run `statement` with `params` (`b_*` names); the number of rows it changed."""
    this = compiled_for(statement, conn.dialect)
    cursor = _cursor(conn)
    args = this.args(params)
    try:
        cursor.execute(this.sql, args)
    except BaseException as exc:
        conn._handle_dbapi_exception(exc, this.sql, args, cursor, None)
    return cursor.rowcount


def execute_many(conn: Connection, statement: Any, rows: list[dict[str, Any]], **same: Any) -> None:
    """Run `statement` once per row of parameters (the driver's executemany); `same` holds
    the values shared by all rows."""
    if not rows:
        return
    this = compiled_for(statement, conn.dialect)
    cursor = _cursor(conn)
    args = this.args_many(rows, same)
    try:
        cursor.executemany(this.sql, args)
    except BaseException as exc:
        conn._handle_dbapi_exception(exc, this.sql, args, cursor, None)


def execute_rows(
    conn: Connection, sqlite_stmt: Any, postgresql_stmt: Any, rows: list[dict], **same: Any
) -> None:
    """Run a statement for many rows (keys `b_<column>`; `same` holds the values shared by
    all): an executemany on SQLite (in-process, so cheap), one array per column on
    PostgreSQL (`postgresql_stmt` reads them through `db.unnest(…)`)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        arrays = {key: [row[key] for row in rows] for key in rows[0]}
        execute(conn, postgresql_stmt, {**arrays, **same})
    else:
        execute_many(conn, sqlite_stmt, rows, **same)
