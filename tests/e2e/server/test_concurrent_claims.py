"""Invariant 1 over HTTP: concurrent claimers never share a record, and none is lost.

32 claimers race over 5,000 records with completions interleaved (one by one, or as a batch
report); some leases are abandoned on purpose, as if their agent died, and must come back
through expiry. The runs table is the witness: per record, no two lease intervals overlap,
and exactly one run is done.
"""

from __future__ import annotations

import random
import threading
import time

from farmhand import wire
from farmhand.client import Conflict, FarmhandClient
from tests.conftest import LiveServer
from tests.e2e.witness import assert_done_once_without_overlap, runs_by_record

RECORDS = 5000
CLAIMERS = 32
ABANDON = 0.02  # share of leases dropped without a report
DONE = wire.RecordState.done
DEADLINE = 600  # seconds for the whole race, all claimers together


def test_concurrent_claims_never_share_a_record(live_server_factory) -> None:
    server: LiveServer = live_server_factory(process=True, lease_ttl=3, sweep_interval=0.5)
    admin = server.client()
    campaign = admin.create_campaign("race")
    # Enough attempts that no record runs out of them by abandonment (with 3, one of 5,000
    # records is abandoned three times in about one run in 25, and fails).
    runs = {"max_attempts": 20}
    specs = [wire.RecordSpec(key=f"r{i}", command="true", run_args=runs) for i in range(RECORDS)]
    admin.submit(campaign.id, specs)
    abandoned: list[int] = []
    too_late: list[int] = []  # reports that lost the race against their lease's expiry
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLAIMERS)

    def report(client: FarmhandClient, leases: list[wire.Lease], batch: bool) -> None:
        if batch:
            answers = client.report_many(
                [wire.RunReport(run_id=x.run_id, token=x.token) for x in leases]
            )
            too_late.extend(a.run_id for a in answers if a.error is not None)
            return
        for lease in leases:
            try:
                client.complete(lease.run_id, wire.RunComplete(token=lease.token))
            except Conflict:
                too_late.append(lease.run_id)

    def claimer(slot: int) -> None:
        try:
            with FarmhandClient(server.url, server.admin_token) as client:
                me = client.register(wire.AgentRegister(name=f"c{slot}", host="h", slots=8))
                rng = random.Random(slot)
                barrier.wait()
                while True:  # until every record is done: abandoned leases come back
                    leases = client.claim(me.agent.id, rng.randint(1, 8), wait=1.0)
                    if not leases:
                        counts = client.campaign(campaign.id).counts
                        if counts[DONE] + counts[wire.RecordState.failed] == RECORDS:
                            return  # everything ended (a failure is caught below)
                        continue
                    keep = []
                    for lease in leases:
                        if rng.random() < ABANDON:
                            abandoned.append(lease.run_id)
                        else:
                            keep.append(lease)
                    if keep:
                        report(client, keep, batch=rng.random() < 0.5)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,), daemon=True) for i in range(CLAIMERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + DEADLINE  # one deadline: a hang costs it once, not per thread
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    running = sum(t.is_alive() for t in threads)
    assert not running, f"{running} claimers still running after {DEADLINE} s"
    assert not errors, errors[:3]
    assert admin.campaign(campaign.id).counts[DONE] == RECORDS

    grouped = runs_by_record(admin)
    assert len(grouped) == RECORDS
    assert_done_once_without_overlap(grouped)
    lost = {r.id for runs in grouped.values() for r in runs if r.state == "lost"}
    # Every lost run was abandoned, or its report came after its lease expired (these
    # claimers send no heartbeats); each such record was leased again and finished.
    assert lost == set(abandoned) | set(too_late)
    assert abandoned  # the expiry path was really exercised
