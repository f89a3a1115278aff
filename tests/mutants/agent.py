"""Known bugs in the agent side (client, runtime, CLI), put back one at a time by `make mutants`."""

from __future__ import annotations

from tests.mutants import Mutant

MUTANTS: list[Mutant] = [
    Mutant(
        "run-env-ids-shifted",
        "agent/runtime/context.py",
        "FARMHAND_RUN_ID=str(lease.run_id),\n        FARMHAND_RECORD_ID=str(lease.record_id),",
        "FARMHAND_RUN_ID=str(lease.record_id),\n        FARMHAND_RECORD_ID=str(lease.campaign_id),",
        ("tests/runtime/test_agent.py::test_command_environment",),
        "a run's FARMHAND_RUN_ID is its record's id, FARMHAND_RECORD_ID its campaign's (issue 13)",
    ),
    Mutant(
        "slot-held-while-packing",
        "agent/runtime/attempt.py",
        "        self._free_share()\n        if self.on_command_end is not None:",
        "        if self.on_command_end is not None:",
        ("tests/runtime/test_slot_release.py",),
        "an attempt holds its command slot while its archive is packed (issue 16)",
    ),
    Mutant(
        "engine-error-spends-attempts",
        "agent/runtime/attempt.py",
        "engine_error = None if timed_out else handle.engine_error(code)",
        "engine_error = None",
        (
            "tests/runtime/test_broken_runners.py::"
            "test_a_runner_that_cannot_start_commands_is_dropped_and_named",
        ),
        "a container engine's own error (image not known) spends the record's attempts (issue 18)",
    ),
    Mutant(
        "autoscaler-ignores-max-jobs",
        "agent/runtime/autoscale/planner.py",
        "        if total >= max_jobs or waiting >= max_pending:",
        "        if waiting >= max_pending:",
        ("tests/runtime/autoscale/test_planner.py::test_plan",),
        "the planner submits past --max-jobs while running jobs fill it",
    ),
    Mutant(
        "autoscaler-gpu-records-fit-anywhere",
        "agent/runtime/autoscale/planner.py",
        "    if need.gpus and need.gpus > (shape.gpus or 0):",
        "    if False:",
        ("tests/runtime/autoscale/test_planner.py::test_plan",),
        "a record needing more GPUs than a node has is submitted for instead of reported",
    ),
    Mutant(
        "stop-signal-not-awaited",
        "agent/runtime/context.py",
        "        while watch.poll(0) and time.monotonic() < deadline:",
        "        while False:",
        (
            "tests/runtime/test_stop_signals.py::"
            "test_an_attempt_waits_for_the_handler_of_a_signal_that_already_arrived",
        ),
        "a command that ends on the batch system's stop signal is reported done",
    ),
    Mutant(
        "prefetch-auto-never-claims-ahead",
        "agent/runtime/resources/prefetch.py",
        "            self._depth = AHEAD * self.slots if short else 0",
        "            self._depth = 0",
        (
            "tests/runtime/resources/test_prefetch.py",
            "tests/runtime/test_claims.py::"
            "test_by_default_an_agent_claims_ahead_once_its_commands_are_short",
        ),
        "short commands wait a claim round trip for each freed slot",
    ),
    Mutant(
        "outbox-never-lingers",
        "agent/runtime/outbox.py",
        "        if left > 0:\n            self._stopped.wait(left)",
        "        pass",
        (
            "tests/runtime/test_outbox_group_commit.py::"
            "test_a_delivery_waits_for_its_oldest_report_to_linger",
        ),
        "reports that end together go one request each",
    ),
    Mutant(
        "spawn-keeps-ignored-signals",
        "agent/runtime/runners/spawn.py",
        "            setsigdef=_DEFAULT_SIGNALS,",
        "            setsigdef=(),",
        (
            "tests/runtime/runners/test_spawn.py::"
            "test_a_new_session_and_the_signals_python_ignores_back_to_default",
        ),
        "commands inherit the agent's ignored SIGPIPE (a pipeline never ends on a closed pipe)",
    ),
    Mutant(
        "libc-spawn-keeps-ignored-signals",
        "agent/runtime/runners/spawn.py",
        "    return libc(_DEFAULT_SIGNALS)",
        "    return libc(())",
        (
            "tests/runtime/runners/test_spawn.py::"
            "test_a_new_session_and_the_signals_python_ignores_back_to_default",
        ),
        "commands started by the C library's spawn inherit the agent's ignored SIGPIPE",
    ),
    Mutant(
        "spawn-holds-the-gil",
        "agent/runtime/runners/spawn.py",
        "        spawner = _libc()",
        "        spawner = None",
        (
            "tests/runtime/runners/test_spawn.py::test_other_threads_run_python_while_a_child_starts",
        ),
        "every command's start (~0.5 ms until its exec) stops all the agent's other threads",
    ),
    Mutant(
        "key-dir-race-orphans",
        "agent/runtime/files/rundirs.py",
        "        except FileExistsError:  # it was there, then removed",
        "        except NotADirectoryError:  # it was there, then removed",
        (
            "tests/runtime/files/test_rundirs.py::"
            "test_a_key_directory_removed_while_it_is_made_is_made_again",
        ),
        "a retry staged while its record's last run dir is cleaned up is orphaned",
    ),
    Mutant(
        "spawn-runs-where-cd-failed",
        "agent/runtime/runners/spawn.py",
        " || exit {CD_FAILED}; ",
        "; ",
        (
            "tests/runtime/runners/test_spawn.py::"
            "test_a_directory_gone_before_the_start_fails_the_command",
        ),
        "a command whose run directory is gone runs in the agent's own directory",
    ),
    Mutant(
        "checkpoint-restored-counts-as-empty",
        "agent/runtime/files/stage_in.py",
        "made and not restored",
        "made",
        (
            "tests/runtime/files/test_checkpoints.py::"
            "test_staging_says_when_the_checkpoint_directory_is_known_empty",
        ),
        "a restored checkpoint is uploaded again as if the command had written it",
    ),
    Mutant(
        "idle-agents-always-beat",
        "agent/runtime/agent.py",
        "        return recent and not self._held_run_ids()",
        "        return False",
        (
            "tests/runtime/test_keep_alive.py::"
            "test_an_idle_agent_stays_live_on_its_claims_and_beats_while_it_holds_a_lease",
        ),
        "1,000 idle agents send 50 heartbeats a second the server does not need (issue 16)",
    ),
    Mutant(
        "agent-with-a-lease-skips-beats",
        "agent/runtime/agent.py",
        "        return recent and not self._held_run_ids()",
        "        return recent",
        (
            "tests/runtime/test_keep_alive.py::"
            "test_an_idle_agent_stays_live_on_its_claims_and_beats_while_it_holds_a_lease",
        ),
        "an agent that claims often enough stops renewing the leases it holds",
    ),
]
