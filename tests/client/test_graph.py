"""The client's view of the parent graph: cycles in a file, parents before children."""

from __future__ import annotations

from farmhand import wire
from farmhand.client import graph


def specs(edges: dict[str, list[str | int]]) -> list[wire.RecordSpec]:
    return [wire.RecordSpec(key=k, command="true", parents=ps) for k, ps in edges.items()]


def test_no_cycle_in_a_diamond() -> None:
    assert graph.on_cycles(specs({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})) == []


def test_a_cycle_and_what_hangs_below_it_are_named() -> None:
    found = graph.on_cycles(specs({"a": ["c"], "b": ["a"], "c": ["b"], "d": ["c"], "e": []}))
    assert found == ["a", "b", "c", "d"]


def test_parents_outside_the_list_are_not_cycles() -> None:
    assert graph.on_cycles(specs({"a": ["server-side", 12], "b": ["a"]})) == []


def test_parents_first_keeps_order_otherwise() -> None:
    ordered = graph.parents_first(specs({"d": ["b", "c"], "x": [], "c": ["a"], "b": [], "a": []}))
    assert [s.key for s in ordered] == ["b", "a", "c", "d", "x"]


def test_parents_first_handles_long_chains_and_leaves_cycles_to_the_server() -> None:
    chain = {f"k{i}": [f"k{i + 1}"] for i in range(5000)} | {"k5000": []}
    ordered = graph.parents_first(specs(chain))
    assert [s.key for s in ordered] == [f"k{i}" for i in range(5000, -1, -1)]
    looped = graph.parents_first(specs({"a": ["b"], "b": ["a"]}))
    assert sorted(s.key for s in looped) == ["a", "b"]
