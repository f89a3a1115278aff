"""The runs table as witness of invariant 1: per record, exactly one run is done and no two
lease intervals overlap."""

from __future__ import annotations

import itertools
from collections import defaultdict

from farmhand import wire
from farmhand.client import FarmhandClient


def runs_by_record(client: FarmhandClient) -> dict[int, list[wire.Run]]:
    """Every run on the server, grouped by record and sorted by claim time."""
    grouped: dict[int, list[wire.Run]] = defaultdict(list)
    after = None
    while True:
        page = client.runs_page(after=after, limit=1000)
        for run in page.items:
            grouped[run.record_id].append(run)
        if page.next is None:
            break
        after = page.next
    for runs in grouped.values():
        runs.sort(key=lambda r: r.claimed_at)
    return dict(grouped)


def assert_done_once_without_overlap(grouped: dict[int, list[wire.Run]]) -> None:
    """Each record has exactly one done run, and each run ended before the next was claimed."""
    for record_id, runs in grouped.items():
        assert [r.state for r in runs].count(wire.RunState.done) == 1, record_id
        for earlier, later in itertools.pairwise(runs):
            assert earlier.ended_at is not None, f"run {earlier.id} never ended"
            assert earlier.ended_at <= later.claimed_at, (
                f"record {record_id}: runs {earlier.id} and {later.id} overlap"
            )
