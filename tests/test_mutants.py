"""The mutation list stays runnable: each mutation finds its text once and names real tests."""

from __future__ import annotations

import pytest

from tests.mutants import MUTANTS, ROOT, Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutation_applies_to_exactly_one_place(mutant: Mutant) -> None:
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.find) == 1, f"{mutant.name}: its text moved; update tests/mutants/"
    assert mutant.find != mutant.replace


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutation_names_tests_that_exist(mutant: Mutant) -> None:
    for test in mutant.tests:
        path, _, name = test.partition("::")
        source = (ROOT / path).read_text()
        assert not name or f"def {name.split('[')[0]}(" in source, f"{mutant.name}: no {test}"


def test_mutation_names_are_unique() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
