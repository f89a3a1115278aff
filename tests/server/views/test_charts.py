"""The campaign page's plots as the API serves them: records ended over time and run times,
from records that ended at known moments (written into the rows, not waited for), on both
backends, with ids that differ between tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, update

from farmhand.server.tables import CAMPAIGN, REC, RUN
from farmhand.server.views import charts
from tests.server.helpers import API, agent, campaign, claim, ids_by_key, submit

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def finish(api: TestClient, campaign_id: int, outcomes: dict[str, str]) -> dict[str, int]:
    """Claim every ready record of the campaign and end each as `outcomes` says."""
    a = agent(api)
    leases = claim(api, a, len(outcomes))
    ids = ids_by_key(api, campaign_id)
    by_id = {v: k for k, v in ids.items()}
    for lease in leases:
        key = by_id[lease["record_id"]]
        body: dict[str, Any] = {"token": lease["token"]}
        if outcomes[key] == "done":
            r = api.post(f"{API}/runs/{lease['run_id']}/complete", json=body)
        else:
            body |= {"error": "exit code 2", "exit_code": 2}
            r = api.post(f"{API}/runs/{lease['run_id']}/fail", json=body)
        assert r.status_code == 200, r.text
    return ids


def set_times(api: TestClient, campaign_id: int, record_id: int, start: float, end: float) -> None:
    """The record's run started at T0 + `start` and it ended at T0 + `end`."""
    with api.app.state.db.write() as session:
        session.execute(
            update(RUN)
            .where(RUN.c.record_id == record_id)
            .values(started_at=at(start), ended_at=at(end))
        )
        session.execute(update(REC).where(REC.c.id == record_id).values(updated_at=at(end)))
        session.execute(update(CAMPAIGN).where(CAMPAIGN.c.id == campaign_id).values(started_at=T0))


def world(api: TestClient) -> tuple[int, dict[str, int]]:
    """Four records of campaign `relax` ended at known times (one failed); a cancelled one,
    and another campaign's record ended in the middle (neither counts)."""
    other = campaign(api, "other")
    c = campaign(api, "relax", max_attempts=1)
    submit(api, c, "a", "b", "c", "d", "e")
    api.post(f"{API}/records/cancel", json={"ids": [ids_by_key(api, c)["e"]]})
    ids = finish(api, c, {"a": "done", "b": "done", "c": "failed", "d": "done"})
    for key, (start, end) in {
        "a": (10, 12),
        "b": (5, 12.5),
        "c": (270, 300),
        "d": (539, 600),
    }.items():
        set_times(api, c, ids[key], start, end)
    submit(api, other, "x")
    (x,) = finish(api, other, {"x": "done"}).values()
    set_times(api, other, x, 100, 101)
    return c, ids


def test_the_timeline_counts_records_ended_per_bucket(api: TestClient) -> None:
    c, _ = world(api)
    r = api.get(f"{API}/campaigns/{c}/timeline")
    assert r.status_code == 200, r.text
    line = r.json()
    # Ten minutes fit in 120 buckets of 5 s, from the first claim.
    assert line["bucket_seconds"] == 5 and line["campaign_id"] == c
    assert line["start"].startswith("2030-01-01T00:00:00")
    points = line["points"]
    assert len(points) == 120
    ended = {i: p["ended"] for i, p in enumerate(points) if p["ended"]}
    assert ended == {2: 2, 60: 1, 119: 1}
    assert points[2] == {
        "t": points[2]["t"],
        "done": 2,
        "failed": 0,
        "ended": 2,
        "throughput": 0.4,
    }
    assert points[2]["t"].startswith("2030-01-01T00:00:10")
    assert (points[59]["done"], points[59]["failed"]) == (2, 0)
    assert (points[60]["done"], points[60]["failed"]) == (2, 1)
    assert (points[-1]["done"], points[-1]["failed"]) == (3, 1)  # the campaign's counts

    fewer = api.get(f"{API}/campaigns/{c}/timeline", params={"buckets": 10}).json()
    assert fewer["bucket_seconds"] == 60 and len(fewer["points"]) == 10
    assert [p["ended"] for p in fewer["points"]] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]


def test_a_running_campaign_runs_its_timeline_to_now(api: TestClient) -> None:
    c, _ = world(api)
    submit(api, c, "later")  # one record remains: the campaign runs
    with api.app.state.db.read() as session:
        line = charts.timeline(
            session.connection(), campaign_id=c, started_at=T0, running=True, now=at(3599)
        )
    assert line.bucket_seconds == 30 and len(line.points) == 120
    assert (line.points[-1].done, line.points[-1].failed) == (3, 1)
    assert line.points[-1].t == at(3570)


def test_runtimes_bin_the_last_runs_and_name_the_slowest(api: TestClient) -> None:
    c, ids = world(api)
    r = api.get(f"{API}/campaigns/{c}/runtimes")
    assert r.status_code == 200, r.text
    times = r.json()
    assert (times["finished"], times["scanned"], times["runs"]) == (4, 4, 4)
    # 61 s at most: bins of 5 s (the round width that fits 24 bins).
    bins = {(b["lo"], b["hi"]): b["count"] for b in times["bins"] if b["count"]}
    assert bins == {(0, 5): 1, (5, 10): 1, (30, 35): 1, (60, 65): 1}
    assert len(times["bins"]) == 13 and sum(b["count"] for b in times["bins"]) == 4
    assert [(s["record_id"], s["key"], s["seconds"]) for s in times["slowest"]] == [
        (ids["d"], "d", 61.0),
        (ids["c"], "c", 30.0),
        (ids["b"], "b", 7.5),
        (ids["a"], "a", 2.0),
    ]


def test_an_empty_campaign_has_no_points_and_no_bins(api: TestClient) -> None:
    c = campaign(api)
    submit(api, c, "a")
    assert api.get(f"{API}/campaigns/{c}/timeline").json()["points"] == []
    assert api.get(f"{API}/campaigns/{c}/runtimes").json()["bins"] == []
    assert api.get(f"{API}/campaigns/999/timeline").status_code == 404


def test_bucket_widths_are_round_and_fit() -> None:
    assert charts.bucket_width(0) == 1
    assert charts.bucket_width(120) == 1
    assert charts.bucket_width(121) == 2
    assert charts.bucket_width(3600) == 30
    assert charts.bucket_width(86400) == 900
    assert charts.bucket_width(30 * 86400) == 21600
    assert charts.bucket_width(365 * 86400) == 4 * 86400


def grown(campaign_id: int, copies: int = 20_000) -> str:
    """SQL that adds `copies` records to the campaign, each a copy of its newest finished
    one under a new key (PostgreSQL)."""
    columns = [c.name for c in REC.columns if c.name != "id"]
    values = ", ".join("key || '-' || g" if c == "key" else c for c in columns)
    return (
        f"INSERT INTO record ({', '.join(columns)}) SELECT {values} FROM record, "
        f"generate_series(1, {copies}) AS g WHERE record.id = (SELECT max(id) FROM record "
        f"WHERE campaign_id = {campaign_id} AND state IN ('done', 'failed'))"
    )


def test_the_plots_read_the_finished_records_index_alone(api: TestClient) -> None:
    """Every statement of the timeline and the run times' first step reads
    ix_record_campaign_ended without a row: its partial condition must match theirs
    (written as literals), or the planners fall back to a row per record."""
    c, _ = world(api)
    db = api.app.state.db
    seen: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM record" in statement and "JOIN" not in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        with db.read() as session:
            conn = session.connection()
            charts.timeline(conn, campaign_id=c, started_at=T0, running=False, now=at(600))
            charts.runtimes(conn, campaign_id=c, finished=4)
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert len(seen) == 4  # the ends, the buckets, and the newest of each state
    with db.read() as session:
        conn = session.connection()
        if db.is_sqlite:
            explain = "EXPLAIN QUERY PLAN "
        else:
            # The plans of a real campaign: 20,000 more of its records, finished, and fresh
            # statistics (with a handful of rows the planner rightly sorts them instead, and
            # with another test's leftover statistics it chose either way).
            conn.exec_driver_sql(grown(c))
            conn.exec_driver_sql("ANALYZE record")
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            explain = "EXPLAIN "
        for statement, parameters in seen:
            plan = "\n".join(
                str(row[-1]) for row in conn.exec_driver_sql(explain + statement, parameters)
            )
            reads = [line for line in plan.splitlines() if " record" in line or "on record" in line]
            assert reads and all("ix_record_campaign_ended" in line for line in reads), plan
            if db.is_sqlite:
                assert all("COVERING INDEX" in line for line in reads), plan


def test_pages_keep_a_running_campaigns_plots_a_moment_and_a_finished_ones_by_counts(
    monkeypatch: Any,
) -> None:
    from tests.server.views.test_status import campaign_row

    clock = [100.0]
    monkeypatch.setattr(charts.time, "monotonic", lambda: clock[0])
    kept, made = charts.Kept(max_age=30), []

    def make() -> int:
        made.append(1)
        return len(made)

    def ask(counts: dict[str, int]) -> int:
        return kept.get(("timeline", *charts._kept_as(campaign_row(counts))), make)

    assert ask({"done": 1, "ready": 3}) == 1
    assert ask({"done": 2, "ready": 2}) == 1  # running: the counts move, the moment holds
    clock[0] += charts.RUNNING_KEEP
    assert ask({"done": 3, "ready": 1}) == 2
    assert ask({"done": 4}) == 3  # finished: kept by its counts
    clock[0] += 20
    assert ask({"done": 4}) == 3
    assert ask({"done": 3, "failed": 1}) == 4  # a retry, failed again: new counts
    clock[0] += 31
    assert ask({"done": 3, "failed": 1}) == 5  # and never beyond max_age
