"""Statements run on the driver's cursor (`prepared`): the same values in the database as
SQLAlchemy's own execution writes, lists bound as one parameter, and SQLAlchemy's
transactions and errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Integer, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from farmhand.server import prepared
from farmhand.server.columns import UTCDateTime
from farmhand.server.db import Database
from farmhand.server.prepared import ListOf, in_list
from farmhand.server.tables import Campaign

CAMPAIGN = Campaign.__table__
WHENS = [
    datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),  # no microseconds
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    datetime(2026, 6, 1, 12, 0, 0, 1),  # naive: UTC
    datetime(999, 1, 1, tzinfo=timezone.utc),
]
# Built once, as the server's are (`prepared` compiles each statement object once).
START = (
    update(CAMPAIGN)
    .where(in_list(CAMPAIGN.c.id, bindparam("b_ids", type_=ListOf(Integer))))
    .values(started_at=bindparam("b_now", type_=UTCDateTime))
)
STARTED = (
    select(CAMPAIGN.c.id, CAMPAIGN.c.started_at, CAMPAIGN.c.defaults)
    .where(in_list(CAMPAIGN.c.id, bindparam("b_ids", type_=ListOf(Integer))))
    .order_by(CAMPAIGN.c.id)
)
ADD = insert(CAMPAIGN).values(
    id=bindparam("b_id"), name="dup", version=1, defaults={}, params=[], end_seq=0
)


@pytest.mark.parametrize("dialect", [sqlite.pysqlite.dialect(), postgresql.psycopg.dialect()])
def test_datetimes_convert_as_sqlalchemys_processors_do(dialect: object) -> None:
    """`UTCDateTime.binder` and `.loader` give what the type's bind and result processing
    give (on SQLite, the very text SQLAlchemy stores)."""
    impl = UTCDateTime().dialect_impl(dialect)
    bind, result = impl.bind_processor(dialect), impl.result_processor(dialect, None)
    binder, loader = UTCDateTime.binder(dialect.name), UTCDateTime.loader(dialect.name)
    for when in [*WHENS, None]:
        stored = bind(when)
        assert binder(when) == stored and type(binder(when)) is type(stored), when
        back = result(stored)
        assert loader(stored) == back and getattr(loader(stored), "tzinfo", None) == getattr(
            back, "tzinfo", None
        )


def campaigns(db: Database, count: int) -> list[int]:
    with db.write_core() as conn:
        return [
            conn.execute(
                insert(CAMPAIGN)
                .values(name=f"c{i}", version=1, defaults={"n": i}, params=[], end_seq=0)
                .returning(CAMPAIGN.c.id)
            ).scalar_one()
            for i in range(count)
        ]


def test_values_are_stored_as_sqlalchemy_stores_them(db: Database) -> None:
    """A datetime written on the driver's cursor is the same value, byte for byte on SQLite,
    as SQLAlchemy writes; reading it back gives what SQLAlchemy reads."""
    ids = campaigns(db, len(WHENS))
    for cid, when in zip(ids, WHENS, strict=True):
        with db.write_core() as conn:
            prepared.execute(conn, START, {"b_ids": [cid], "b_now": when})
            conn.execute(update(CAMPAIGN).where(CAMPAIGN.c.id == cid).values(finished_at=when))
    with db.read() as s:
        same = s.execute(text("SELECT count(*) FROM campaign WHERE started_at = finished_at"))
        assert same.scalar() == len(WHENS)
        if db.dialect == "sqlite":
            kinds = s.execute(text("SELECT DISTINCT typeof(started_at) FROM campaign")).all()
            assert kinds == [("text",)]
        expected = s.execute(
            select(CAMPAIGN.c.id, CAMPAIGN.c.finished_at, CAMPAIGN.c.defaults).order_by(
                CAMPAIGN.c.id
            )
        ).all()
    with db.write_core() as conn:
        found = prepared.fetch(conn, STARTED, {"b_ids": ids})
    assert [tuple(row) for row in found] == [tuple(row) for row in expected]
    assert all(row.started_at.tzinfo == timezone.utc for row in found)


def test_a_list_is_one_parameter_of_any_length(db: Database) -> None:
    ids = campaigns(db, 4)
    when = WHENS[0]
    with db.write_core() as conn:
        assert prepared.execute(conn, START, {"b_ids": [], "b_now": when}) == 0
        assert prepared.execute(conn, START, {"b_ids": ids[1:3], "b_now": when}) == 2
        assert prepared.execute(conn, START, {"b_ids": [999], "b_now": when}) == 0
        started = [row.id for row in prepared.fetch(conn, STARTED, {"b_ids": ids})]
        assert [row.id for row in prepared.fetch(conn, STARTED, {"b_ids": [ids[3]]})]
    with db.read() as s:
        assert (
            s.execute(select(CAMPAIGN.c.id).where(CAMPAIGN.c.started_at.is_not(None)))
            .scalars()
            .all()
            == ids[1:3]
        )
    assert started == ids


def test_a_statement_runs_in_the_callers_transaction(db: Database) -> None:
    """Outside a transaction it begins one, as SQLAlchemy would; a rollback undoes it."""
    (cid,) = campaigns(db, 1)
    with db.engine.connect() as conn:
        prepared.execute(conn, START, {"b_ids": [cid], "b_now": WHENS[0]})
        assert conn.in_transaction()
        conn.rollback()
    with db.read() as s:
        assert s.execute(select(CAMPAIGN.c.started_at)).scalar() is None


def test_a_driver_error_is_sqlalchemys_and_leaves_the_connection_usable(db: Database) -> None:
    (cid,) = campaigns(db, 1)
    with pytest.raises(IntegrityError), db.write_core() as conn:
        prepared.execute(conn, ADD, {"b_id": cid})
    with db.write_core() as conn:  # the same connection on SQLite (`write_core` keeps it)
        prepared.execute(conn, START, {"b_ids": [cid], "b_now": WHENS[0]})
    with db.read() as s:
        assert s.execute(select(CAMPAIGN.c.started_at)).scalar() == WHENS[0]
