"""Known bugs in the server, put back one at a time by `make mutants`."""

from __future__ import annotations

from tests.mutants import Mutant

MUTANTS: list[Mutant] = [
    Mutant(
        "wake-submit",
        "server/routes/records.py",
        "        wakeup.notify(answer.created + answer.replaced)",
        "        pass",
        ("tests/server/queue/waking/test_wakeups.py::test_a_submission_wakes_a_sleeping_claim",),
        "a submission does not wake waiting claims",
    ),
    Mutant(
        "wake-retry",
        "server/routes/records.py",
        "        wakeup.notify(len(answer.changed))",
        "        pass",
        ("tests/server/queue/waking/test_wakeups.py::test_a_retry_wakes_a_sleeping_claim",),
        "a retry does not wake waiting claims",
    ),
    Mutant(
        "wake-retry-button",
        "server/pages/routes.py",
        "    request.app.state.wakeup.notify(len(answer.changed))",
        "    pass",
        (
            "tests/server/queue/waking/test_wakeups.py::test_the_retry_button_wakes_a_sleeping_claim",
        ),
        "the page's retry button does not wake waiting claims",
    ),
    Mutant(
        "wake-bulk-retry",
        "server/pages/bulk.py",
        "            request.app.state.wakeup.notify(len(answer.changed))  # a waiting claim each",
        "            pass",
        ("tests/server/queue/waking/test_wakeups.py::test_the_bulk_retry_wakes_a_sleeping_claim",),
        "the campaign page's bulk retry does not wake waiting claims",
    ),
    Mutant(
        "bulk-past-the-count",
        "server/catalog/walk.py",
        "        span = (span[0], min(span[1], through))",
        "        span = span",
        (
            "tests/server/pages/test_pages_bulk.py::test_the_action_leaves_records_submitted_after_the_count_alone",
        ),
        "a confirmed bulk action also takes records submitted after its count",
    ),
    Mutant(
        "wake-requeued",
        "server/routes/runs.py",
        "    _wake(wakeup, unblocked, 1 if ack.record_state == wire.RecordState.ready else 0)",
        "    _wake(wakeup, unblocked, 0)",
        (
            "tests/server/queue/waking/test_wakeups.py::test_a_failed_attempt_that_requeues_wakes_a_sleeping_claim",
            "tests/server/queue/waking/test_wakeups.py::test_a_release_wakes_a_sleeping_claim",
        ),
        "a failed attempt that re-queues, or a release, does not wake waiting claims",
    ),
    Mutant(
        "wake-complete",
        "server/queue/lifecycle.py",
        "    return session.info.pop(MADE_READY, 0)",
        "    return 0",
        (
            "tests/server/queue/waking/test_wakeups.py::test_a_completed_parent_wakes_a_claim_for_its_child",
        ),
        "a completed parent does not wake claims for its children",
    ),
    Mutant(
        "wake-reports",
        "server/routes/runs.py",
        "        wakeup.notify(unblocked + requeued)",
        "        pass",
        (
            "tests/server/queue/waking/test_wakeups.py::test_a_batch_report_wakes_a_sleeping_claim",
            "tests/server/queue/waking/test_wakeups.py::test_a_completed_parent_wakes_a_claim_for_its_child",
        ),
        "run reports do not wake waiting claims",
    ),
    Mutant(
        "wake-requeued-batch",
        "server/routes/runs.py",
        "    requeued = sum(1 for a in answers",
        "    requeued = 0 * sum(1 for a in answers",
        ("tests/server/queue/waking/test_wakeups.py::test_a_batch_report_wakes_a_sleeping_claim",),
        "a batch report's re-queued records do not wake waiting claims",
    ),
    Mutant(
        "wake-agent-stop",
        "server/routes/agents.py",
        "        wakeup.notify(released)",
        "        pass",
        (
            "tests/server/queue/waking/test_wakeups.py::test_stopping_an_agent_wakes_a_claim_for_its_records",
        ),
        "stopping an agent does not wake claims for its released records",
    ),
    Mutant(
        "wake-bundle-import",
        "server/routes/bundles.py",
        "        wakeup.notify(answer.created + answer.merged)",
        "        pass",
        ("tests/server/queue/waking/test_wakeups.py::test_a_bundle_import_wakes_a_sleeping_claim",),
        "a bundle import does not wake waiting claims",
    ),
    Mutant(
        "wake-sweep",
        "server/app.py",
        "            app.state.wakeup.notify(expired.requeued)",
        "            pass",
        (
            "tests/server/queue/waking/test_wakeups.py::test_the_lease_sweep_wakes_a_claim_for_the_records_it_requeues",
        ),
        "the lease sweep does not wake claims for what it re-queued",
    ),
    Mutant(
        "wake-noop",
        "server/queue/waking/wakeups.py",
        "            loop.call_soon_threadsafe(self._notify, count)",
        "            pass",
        ("tests/e2e/server/test_long_poll.py",),
        "Wakeup.notify() wakes nobody (test_long_poll passed with this for a year)",
    ),
    Mutant(
        "write-lock-unused",
        "server/db.py",
        "        with self._write_lock or nullcontext():  # noqa: SIM117 - the lock must wrap "
        "the session",
        "        with nullcontext():  # noqa: SIM117 - the lock must wrap the session",
        ("tests/server/bundles/test_bundles.py::test_two_imports_into_one_campaign_take_turns",),
        "SQLite ORM writers skip the process's write lock (the lock tests proved nothing)",
    ),
    Mutant(
        "loop-writer-sleeps-when-busy",
        "server/db.py",
        '        driver.execute("PRAGMA busy_timeout=0")\n',
        "",
        (
            "tests/server/test_db.py::test_run_write_waits_on_the_thread_pool_while_another_process_writes",
        ),
        "the event loop's connection sleeps in SQLite's busy handler while another process writes",
    ),
    Mutant(
        "loop-writer-ignores-the-queue",
        "server/db.py",
        "        return not self.waiting and self._lock.acquire(blocking=False)",
        "        return self._lock.acquire(blocking=True)",
        (
            "tests/server/test_db.py::test_run_write_waits_on_the_thread_pool_while_another_thread_writes",
        ),
        "the event loop waits for the write lock another thread holds",
    ),
    Mutant(
        "metrics-missing-zero",
        "server/serving/metrics.py",
        "            for state, n in campaign.counts.items():\n",
        "            for state, n in [kv for kv in campaign.counts.items() if kv[1]]:\n",
        ("tests/server/serving/test_metrics.py::test_records_by_campaign_and_state",),
        "the records gauge leaves out states with no records (the test read a missing series as 0)",
    ),
    Mutant(
        "export-checkpoints-by-record",
        "server/bundles/export.py",
        "checkpoints = _grouped(session, CHECKPOINT, CHECKPOINT.c.run_id, ids)",
        "checkpoints = _grouped(session, CHECKPOINT, CHECKPOINT.c.record_id, ids)",
        ("tests/server/bundles/test_bundles.py::test_export_gives_each_run_its_own_checkpoints",),
        "a bundle's runs carry the checkpoints of the record whose id they share (issue 13)",
    ),
    Mutant(
        "newest-checkpoint-of-all",
        "server/catalog/inputs.py",
        "            .group_by(CHECKPOINT.c.record_id)\n",
        "",
        (
            "tests/server/storage/test_snapshot_refs.py::test_a_claim_of_two_records_gives_each_its_own_newest_checkpoint",
        ),
        "a claim of several records restores only the newest checkpoint of them all (issue 13)",
    ),
    Mutant(
        "claim-checkpoint-uncorrelated",
        "server/queue/claim.py",
        'exists().where(CHECKPOINT.c.record_id == claimed_id).label("has_checkpoint")',
        'exists().where(CHECKPOINT.c.record_id == REC.c.id).label("has_checkpoint")',
        (
            "tests/server/storage/test_snapshot_refs.py::"
            "test_each_retry_gets_its_own_records_newest_checkpoint",
        ),
        "on SQLite the claim's RETURNING binds `id` to checkpoint.id: retries lose their "
        "checkpoints (issue 13)",
    ),
    Mutant(
        "waiters-poll-each",
        "server/routes/leases.py",
        "        await wakeup.wait(remaining, since=seen)",
        "        await wakeup.wait(min(remaining, call.settings.claim_poll_interval), since=seen)",
        (
            "tests/e2e/server/test_long_poll.py::"
            "test_idle_claims_cost_one_look_per_interval_not_a_claim_each",
        ),
        "every waiting claim re-runs a claim transaction each poll interval (issue 16)",
    ),
    Mutant(
        "queue-watch-silent",
        "server/app.py",
        "            wakeup.wake()",
        "            pass",
        ("tests/e2e/server/test_long_poll.py::test_a_lease_that_runs_out_wakes_a_waiting_claim",),
        "a lease that runs out does not wake waiting claims until they give up (issue 16)",
    ),
    Mutant(
        "claims-ignore-quiet",
        "server/routes/leases.py",
        "        if wakeup.quiet:",
        "        if False:",
        (
            "tests/e2e/server/test_long_poll.py::test_idle_claims_cost_one_look_per_interval_not_a_claim_each",
            "tests/server/queue/waking/test_quiet.py::test_a_quiet_queue_costs_a_claim_no_write_transaction",
        ),
        "an idle long poll runs a claim transaction although the queue is known quiet (issue 16)",
    ),
    Mutant(
        "quiet-skips-the-agent-check",
        "server/routes/leases.py",
        "            if not admitted:",
        "            if False:",
        (
            "tests/server/queue/waking/test_quiet.py::test_a_quiet_queue_still_refuses_a_stopped_or_unknown_agent_at_once",
        ),
        "a stopped agent's claim waits out its long poll instead of a 409 while the queue is quiet",
    ),
    Mutant(
        "claim-skips-expiry",
        "server/queue/claim.py",
        "    if gate.due:\n        expire(conn, now=now)",
        "    if gate.due:\n        pass",
        (
            "tests/server/queue/test_lifecycle.py::test_a_lost_lease_with_no_attempts_left_fails_the_descendants",
        ),
        "claims stop expiring lost leases themselves",
    ),
    Mutant(
        "claim-ignores-retry-delay",
        "server/queue/claim.py",
        '        .where(due(bindparam("b_now", type_=UTCDateTime)))\n',
        "",
        (
            "tests/server/queue/test_retry_delay.py::"
            "test_a_failed_attempt_waits_its_retry_delay_doubling_per_attempt",
        ),
        "a failed attempt's record is claimed again before its retry_delay (issue 18)",
    ),
    Mutant(
        "autoscaler-lease-never-expires",
        "server/allocations/jobs.py",
        "    if not same or row.expires_at <= now:",
        "    if not same:",
        (
            "tests/server/allocations/test_allocations.py::"
            "test_an_expired_lease_goes_to_the_next_and_fences_the_old_holder",
        ),
        "an autoscaler whose lease ran out (and was taken over) still records jobs",
    ),
    Mutant(
        "finish-without-campaign-lock",
        "server/queue/lifecycle.py",
        '        session.execute(LOCK_CAMPAIGNS, {"b_campaigns": ids})',
        "        pass",
        (
            "tests/server/queue/test_campaign_finish.py::"
            "test_two_reports_ending_the_last_two_records_finish_the_campaign",
            "tests/server/queue/test_campaign_finish.py::"
            "test_a_submission_racing_the_last_report_leaves_the_campaign_unfinished",
        ),
        "two transactions ending a campaign's last records at once on PostgreSQL each see "
        "the other's record unfinished: the campaign never finishes",
    ),
    Mutant(
        "finish-ignores-downstream-campaigns",
        "server/queue/lifecycle.py",
        "    finish_campaigns(session, {*campaign_ids, *downstream}, now=now)",
        "    finish_campaigns(session, campaign_ids, now=now)",
        (
            "tests/server/queue/test_campaign_finish.py::"
            "test_a_failure_upstream_in_another_campaign_finishes_the_childs_campaign",
        ),
        "a failure upstream that ends another campaign's last record leaves it unfinished",
    ),
    Mutant(
        "reopen-ignores-ended-work",
        "server/queue/lifecycle.py",
        "lock_campaigns(session, campaign_ids):\n        if session.execute(",
        "lock_campaigns(session, campaign_ids):\n        if False and (",
        (
            "tests/server/queue/test_campaign_finish.py::"
            "test_a_retry_failed_again_upstream_at_once_leaves_the_campaign_finished",
        ),
        "a retry that fails upstream at once leaves a campaign with nothing to run unfinished",
    ),
    Mutant(
        "delete-locks-campaign-first",
        "server/catalog/removal.py",
        "    conn.execute(records.with_for_update())\n    conn.execute(campaign.with_for_update())",
        "    conn.execute(campaign.with_for_update())\n    conn.execute(records.with_for_update())",
        (
            "tests/server/queue/test_campaign_finish.py::"
            "test_a_campaign_deleted_while_its_last_report_commits_waits_without_deadlock",
        ),
        "deleting a campaign while a report of its records commits deadlocks on PostgreSQL",
    ),
    Mutant(
        "submit-writes-campaign-first",
        "server/catalog/submission/submit.py",
        "    if not body.force and not any(spec.parents for spec in body.records):\n",
        "    _note_names(session, campaign, body)\n"
        "    if not body.force and not any(spec.parents for spec in body.records):\n",
        (
            "tests/server/catalog/submission/test_submit_locking.py::"
            "test_a_forced_replacement_racing_the_report_of_its_run_does_not_deadlock",
        ),
        "a forced replacement with new param names writes the campaign row before locking its "
        "records: racing the report of the run it replaces, it deadlocks on PostgreSQL",
    ),
    Mutant(
        "submit-decides-unlocked",
        "server/catalog/submission/submit.py",
        "    if body.force:\n        _lock(session, existing, changed)\n",
        "",
        (
            "tests/server/catalog/submission/test_submit_locking.py::"
            "test_a_record_done_while_a_forced_submission_waited_for_it_is_not_replaced",
        ),
        "a forced submission decides on states read before the lock: a record done while it "
        "waited is replaced without force_ignores_success",
    ),
    Mutant(
        "idle-connections-unpinged",
        "server/db.py",
        "        if since is None or time.monotonic() - since <= idle:",
        "        if True:",
        (
            "tests/server/test_db.py::"
            "test_a_connection_cut_while_idle_is_replaced_before_a_request_sees_it",
        ),
        "after a database restart while the server was idle, the first requests fail",
    ),
    Mutant(
        "claims-keep-no-agent-alive",
        "server/routes/leases.py",
        "            call.claimers.add(body.agent_id)",
        "            pass",
        (
            "tests/server/queue/test_claims_keep_alive.py::test_only_an_admitted_claim_counts",
            "tests/server/queue/test_claims_keep_alive.py::"
            "test_a_claim_moves_the_agents_last_heartbeat",
        ),
        "an idle agent that skips its heartbeats, as the server told it it may, goes stale",
    ),
]
