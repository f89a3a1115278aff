"""Invariant 1 over HTTP: many concurrent claimers, every record leased exactly once."""

from __future__ import annotations

import random
import threading
from collections import Counter

from farmhand.agent import wire
from farmhand.agent.client import FarmhandClient
from tests.conftest import LiveServer

RECORDS = 500
CLAIMERS = 8


def test_concurrent_claims_lease_every_record_exactly_once(live_server: LiveServer) -> None:
    admin = live_server.client()
    campaign = admin.create_campaign("race")
    admin.submit(
        campaign.id, [wire.RecordSpec(key=f"r{i}", command="true") for i in range(RECORDS)]
    )
    leased: list[list[int]] = [[] for _ in range(CLAIMERS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLAIMERS)

    def claimer(slot: int) -> None:
        try:
            with FarmhandClient(live_server.url, live_server.admin_token) as client:
                me = client.register(wire.AgentRegister(name=f"c{slot}", host="h", slots=8))
                rng = random.Random(slot)
                barrier.wait()
                while True:
                    leases = client.claim(me.agent.id, rng.randint(1, 8))
                    if not leases:
                        return
                    for lease in leases:
                        leased[slot].append(lease.record_id)
                        client.complete(lease.run_id, wire.RunComplete(token=lease.token))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(CLAIMERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    per_record = Counter(rid for mine in leased for rid in mine)
    assert len(per_record) == RECORDS
    assert set(per_record.values()) == {1}
    assert sum(1 for mine in leased if mine) > 1  # the claimers really competed
    done = admin.campaign(campaign.id).counts[wire.RecordState.done]
    assert done == RECORDS
    runs = admin.runs_page(limit=1000).items
    assert len(runs) == RECORDS and {r.state for r in runs} == {wire.RunState.done}
