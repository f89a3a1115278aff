"""The campaign page's record lists: filters, keyset cursors both ways, the bounded tag
window, the plans the key-prefix search gets, and a record's parents and children."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import event, insert

from farmhand.agent import wire
from farmhand.server import browse
from farmhand.server.browse import Filters
from farmhand.server.db import Database
from farmhand.server.tables import Campaign, Record, RecordParent

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
    keys = pager(db, fill(db, 25))
    first, before, after = keys()
    assert first == ["k000", "k001", "k002", "k003"] and before is None and after == 4
    second, before, after = keys(after=4)
    assert second == ["k004", "k005", "k006", "k007"] and (before, after) == (5, 8)
    assert keys(before=5) == (first, None, 4)
    done, _, after = keys(state=wire.RecordState.done)
    assert done == ["k000", "k003", "k006", "k009"]
    assert keys(state=wire.RecordState.done, after=after)[0] == ["k012", "k015", "k018", "k021"]
    assert keys(key_prefix="k02") == (["k020", "k021", "k022", "k023"], None, 24)
    assert keys(key_prefix="k02", after=24) == (["k024"], 25, None)
    assert keys(key_prefix="k_")[0] == []  # `_` and `%` are not wildcards
    assert keys(key_prefix="k%")[0] == []
    assert keys(key_prefix="z")[0] == []
    assert keys(dataset="odd") == (["k001", "k003", "k005", "k007"], None, 8)
    assert keys(dataset="odd", after=8, state=wire.RecordState.done)[0] == ["k009", "k015", "k021"]
    assert keys(dataset="odd", key_prefix="k01")[0] == ["k011", "k013", "k015", "k017"]
    assert keys(dataset="none") == ([], None, None)
    assert keys(after=25) == ([], 26, None)  # past the end (ids 1-25): only the way back


def test_a_tag_filter_searches_a_bounded_window_and_goes_on_from_its_end(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = {i: ["all"] for i in range(30)}
    cid = fill(db, 30, {**common, 5: ["all", "rare"], 25: ["all", "rare"], 7: ["a_b", "all"]})
    keys = pager(db, cid)
    monkeypatch.setattr(browse, "TAG_WINDOW", 10)
    assert keys(tag="all") == (["k000", "k001", "k002", "k003"], None, 4)  # found in the window
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
            session, campaign_id=cid, filters=Filters(tag="rare"), after=10, limit=4
        )
    assert page.items == [] and page.searched == 10 and (page.before, page.after) == (11, 20)
    assert keys(before=27, tag="rare") == (["k025"], 17, 26)  # window 17-26, more before
    assert keys(before=26, tag="rare") == ([], 16, 25)  # back through the window 16-25
    assert keys(tag="aXb") == ([], None, 10)  # `_` in a tag is not a wildcard
    assert keys(tag="a_b")[0] == ["k007"]
    # The window counts only records the other filters let through: ten ready ones.
    assert keys(tag="rare", state=wire.RecordState.ready, after=10) == ([], 11, 24)
    assert keys(tag="rare", state=wire.RecordState.ready, after=24) == (["k025"], 26, None)
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
    fill(db, 6)
    with db.write() as session:
        edges = [(2, 1), (3, 1), (4, 1), (5, 1), (5, 2)]
        session.execute(
            insert(RecordParent.__table__), [{"record_id": c, "parent_id": p} for c, p in edges]
        )
    monkeypatch.setattr(browse, "RELATIVES", 3)
    with db.read() as session:
        root, leaf, alone = (browse.relatives(session, i) for i in (1, 5, 6))
    assert root.parents == [] and root.children == [(2, "k001"), (3, "k002"), (4, "k003")]
    assert root.more_children
    assert leaf.parents == [(1, "k000"), (2, "k001")] and leaf.children == []
    assert not leaf.more_children and alone == browse.Relatives([], [])
