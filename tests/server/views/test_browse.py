"""The campaign page's record lists: filters, keyset cursors both ways, the bounded tag
window, the plans the key-prefix search gets, and a record's parents and children."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from farmhand import wire
from farmhand.server.db import Database
from farmhand.server.tables import Campaign, Record, RecordParent
from farmhand.server.views import browse
from farmhand.server.views.browse import Filters

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def fill(db: Database, n: int, tags: dict[int, list[str]] | None = None) -> int:
    """`n` records k000…: every third done, the rest ready; datasets by parity."""
    with db.write() as session:
        c = Campaign(name="c")
        session.add(c)
        session.flush()
        rows = [
            {
                "campaign_id": c.id,
                "key": f"k{i:03d}",
                "command": "x",
                "run_args": {},
                "state": "done" if i % 3 == 0 else "ready",
                "dataset": "even" if i % 2 == 0 else "odd",
                "tags": (tags or {}).get(i, []),
                "created_at": T0,
                "updated_at": T0,
            }
            for i in range(n)
        ]
        session.execute(insert(Record.__table__), rows)
        return c.id


def numbering(db: Database, cid: int) -> Callable[[int], int]:
    """`at(n)`: the id of the campaign's n-th record (k000 is the first), whose ids run on
    without gaps (one insert); `at(n)` past the last is an id no record has yet."""
    with db.read() as session:
        ids = list(
            session.execute(
                select(Record.id).where(Record.campaign_id == cid).order_by(Record.key)
            ).scalars()
        )
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    return lambda n: ids[0] + n - 1


def pager(db: Database, cid: int, limit: int = 4) -> Any:
    def keys(
        after: int | None = None, before: int | None = None, **chosen: Any
    ) -> tuple[list[str], int | None, int | None]:
        with db.read() as session:
            page = browse.record_page(
                session,
                campaign_id=cid,
                filters=Filters(**chosen),
                after=after,
                before=before,
                limit=limit,
            )
        return [r.key for r in page.items], page.before, page.after

    return keys


def test_record_pages_go_both_ways_with_filters(db: Database) -> None:
    cid = fill(db, 25)
    keys, at = pager(db, cid), numbering(db, cid)
    first, before, after = keys()
    assert first == ["k000", "k001", "k002", "k003"] and before is None and after == at(4)
    second, before, after = keys(after=at(4))
    assert second == ["k004", "k005", "k006", "k007"] and (before, after) == (at(5), at(8))
    assert keys(before=at(5)) == (first, None, at(4))
    done, _, after = keys(state=wire.RecordState.done)
    assert done == ["k000", "k003", "k006", "k009"]
    assert keys(state=wire.RecordState.done, after=after)[0] == ["k012", "k015", "k018", "k021"]
    assert keys(key_prefix="k02") == (["k020", "k021", "k022", "k023"], None, at(24))
    assert keys(key_prefix="k02", after=at(24)) == (["k024"], at(25), None)
    assert keys(key_prefix="k_")[0] == []  # `_` and `%` are not wildcards
    assert keys(key_prefix="k%")[0] == []
    assert keys(key_prefix="z")[0] == []
    assert keys(dataset="odd") == (["k001", "k003", "k005", "k007"], None, at(8))
    odd_done = keys(dataset="odd", after=at(8), state=wire.RecordState.done)[0]
    assert odd_done == ["k009", "k015", "k021"]
    assert keys(dataset="odd", key_prefix="k01")[0] == ["k011", "k013", "k015", "k017"]
    assert keys(dataset="none") == ([], None, None)
    assert keys(after=at(25)) == ([], at(26), None)  # past the end: only the way back


def test_a_tag_filter_searches_a_bounded_window_and_goes_on_from_its_end(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = {i: ["all"] for i in range(30)}
    cid = fill(db, 30, {**common, 5: ["all", "rare"], 25: ["all", "rare"], 7: ["a_b", "all"]})
    keys, at = pager(db, cid), numbering(db, cid)
    monkeypatch.setattr(browse, "TAG_WINDOW", 10)
    assert keys(tag="all") == (["k000", "k001", "k002", "k003"], None, at(4))  # found in the window
    found, steps, after = [], 0, None
    while True:
        page, _, after = keys(after=after, tag="rare")
        found += page
        steps += 1
        if after is None:
            break
    assert found == ["k005", "k025"] and steps == 4  # three full windows, then an empty one
    with db.read() as session:
        page = browse.record_page(
            session, campaign_id=cid, filters=Filters(tag="rare"), after=at(10), limit=4
        )
    assert (
        page.items == [] and page.searched == 10 and (page.before, page.after) == (at(11), at(20))
    )
    assert keys(before=at(27), tag="rare") == (["k025"], at(17), at(26))  # more before
    assert keys(before=at(26), tag="rare") == ([], at(16), at(25))  # a window back
    assert keys(tag="aXb") == ([], None, at(10))  # `_` in a tag is not a wildcard
    assert keys(tag="a_b")[0] == ["k007"]
    # The window counts only records the other filters let through: ten ready ones.
    assert keys(tag="rare", state=wire.RecordState.ready, after=at(10)) == ([], at(11), at(24))
    assert keys(tag="rare", state=wire.RecordState.ready, after=at(24)) == (["k025"], at(26), None)
    assert keys(tag="rare", dataset="even")[0] == []  # both are odd


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The SQL (and parameters) the database is sent meanwhile."""
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)


def test_the_key_prefix_search_reads_an_index(db: Database, backend: str) -> None:
    keys = pager(db, fill(db, 3000))  # enough rows that reading them all costs more
    with statements(db) as sent:
        assert keys(key_prefix="k1040")[0] == ["k1040"]
    (statement, parameters), *_ = [(s, p) for s, p in sent if "FROM record" in s]
    with db.engine.connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql("ANALYZE record")
            plan = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
            assert any("ix_record_campaign_key_pattern" in line for line in plan), plan
            assert any("~>=~" in line for line in plan), plan  # the prefix as an index range
        else:
            plan = [
                row[3]
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
            assert any(
                "sqlite_autoindex_record_1 (campaign_id=? AND key>? AND key<?)" in p for p in plan
            ), plan


def test_relatives_are_ids_and_keys_with_children_cut(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = numbering(db, fill(db, 6))
    with db.write() as session:
        edges = [(2, 1), (3, 1), (4, 1), (5, 1), (5, 2)]
        session.execute(
            insert(RecordParent.__table__),
            [{"record_id": at(c), "parent_id": at(p)} for c, p in edges],
        )
    monkeypatch.setattr(browse, "RELATIVES", 3)
    with db.read() as session:
        root, leaf, alone = (browse.relatives(session, at(n)) for n in (1, 5, 6))
    assert root.parents == []
    assert root.children == [(at(2), "k001"), (at(3), "k002"), (at(4), "k003")]
    assert root.more_children
    assert leaf.parents == [(at(1), "k000"), (at(2), "k001")] and leaf.children == []
    assert not leaf.more_children and alone == browse.Relatives([], [])
