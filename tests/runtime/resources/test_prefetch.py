"""The prefetch depth: fixed when given, else chosen from the recent commands' run times."""

from __future__ import annotations

import pytest

from farmhand.runtime.resources.prefetch import AHEAD, MIN_SEEN, SHORT_COMMAND, WINDOW, Prefetch


def test_a_fixed_depth_never_moves() -> None:
    prefetch = Prefetch(3, slots=8)
    for _ in range(WINDOW):
        prefetch.command_ended(0.001)
    assert prefetch.depth() == 3 and not prefetch.auto and prefetch.describe() == "3"
    assert prefetch.least_claim() == 1


def test_auto_holds_none_ahead_until_enough_commands_ended() -> None:
    prefetch = Prefetch(None, slots=8)
    for _ in range(MIN_SEEN - 1):
        prefetch.command_ended(0.001)
        assert prefetch.depth() == 0
    assert prefetch.least_claim() == 1
    prefetch.command_ended(0.001)
    assert prefetch.depth() == AHEAD * 8 and prefetch.describe() == f"auto (now {AHEAD * 8})"
    assert prefetch.least_claim() == 8  # a claim waits for a slot's worth of free places


def test_auto_follows_the_median_of_the_recent_commands() -> None:
    prefetch = Prefetch(None, slots=4)
    for _ in range(WINDOW):
        prefetch.command_ended(0.01)
    assert prefetch.depth() == AHEAD * 4
    # One long command among short ones does not change the median …
    prefetch.command_ended(SHORT_COMMAND * 100)
    assert prefetch.depth() == AHEAD * 4
    # … a run of long ones does, and short ones bring it back.
    for _ in range(WINDOW // 2 + 1):
        prefetch.command_ended(SHORT_COMMAND * 2)
    assert prefetch.depth() == 0 and prefetch.least_claim() == 1
    for _ in range(WINDOW // 2 + 1):
        prefetch.command_ended(0.01)
    assert prefetch.depth() == AHEAD * 4


def test_a_negative_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Prefetch(-1, slots=1)
