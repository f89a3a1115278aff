"""Sweeps: command templates, the product and zip of param lists, default keys, and the
RecordSpecs a sweep makes (farmhand.client.sweeps)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from farmhand.client import sweeps


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("lmp -var T {T} -var a {a}", "lmp -var T 300 -var a 4.05"),
        ("{T}{T}-{a}", "300300-4.05"),
        ("relax={relaxed} phase={phase}", "relax=true phase=fcc"),
        # The shell's own expansions stay the shell's.
        ("echo ${T} $T ${T:-1} {T}", "echo ${T} $T ${T:-1} 300"),
        # {{name}} is a literal {name}; }} anywhere else stays }}.
        ("echo {{T}} {T}", "echo {T} 300"),
        ("""echo '{"a": {"b": {T}}}'""", """echo '{"a": {"b": 300}}'"""),
        ("""echo '{"a": {"b": 1}}'""", """echo '{"a": {"b": 1}}'"""),
        ("awk '{print $1}' out.txt", "awk '{print $1}' out.txt"),
        (r"find . -name '*.log' -exec gzip {} \;", r"find . -name '*.log' -exec gzip {} \;"),
        ("{ } {1} {T-1} {T.x} {-a}", "{ } {1} {T-1} {T.x} {-a}"),
        ("no placeholders at all", "no placeholders at all"),
    ],
)
def test_render_replaces_only_identifier_placeholders(template: str, expected: str) -> None:
    params = {"T": 300, "a": 4.05, "relaxed": True, "phase": "fcc"}
    assert sweeps.render(template, params) == expected


def test_render_refuses_a_placeholder_that_is_not_a_param() -> None:
    with pytest.raises(ValueError) as info:
        sweeps.render("awk '{print}' {T}", {"T": 300, "a": 4.0})
    message = str(info.value)
    assert "placeholder {print} is not a param (params: T, a)" in message
    assert "{{print}}" in message  # and how to write it literally


def test_expand_is_the_product_in_the_order_given_last_name_fastest() -> None:
    combos = sweeps.expand({"a": [4.0, 4.05], "T": [300, 600, 900]})
    assert combos == [
        {"a": 4.0, "T": 300},
        {"a": 4.0, "T": 600},
        {"a": 4.0, "T": 900},
        {"a": 4.05, "T": 300},
        {"a": 4.05, "T": 600},
        {"a": 4.05, "T": 900},
    ]
    # Another name order is another order of combinations.
    assert [(c["a"], c["T"]) for c in sweeps.expand({"T": [300, 600], "a": [4.0, 4.05]})] == [
        (4.0, 300),
        (4.05, 300),
        (4.0, 600),
        (4.05, 600),
    ]


def test_expand_a_scalar_is_a_one_element_list() -> None:
    assert sweeps.expand({"phase": "fcc", "T": [1, 2], "ok": True}) == [
        {"phase": "fcc", "T": 1, "ok": True},
        {"phase": "fcc", "T": 2, "ok": True},
    ]


def test_expand_zip_pairs_the_lists() -> None:
    combos = sweeps.expand({"a": [4.0, 4.05, 4.1], "T": [300, 600, 900]}, zip_lists=True)
    assert combos == [{"a": 4.0, "T": 300}, {"a": 4.05, "T": 600}, {"a": 4.1, "T": 900}]


@pytest.mark.parametrize(
    ("params", "zip_lists", "needle"),
    [
        ({"a": [1, 2, 3], "T": [1, 2]}, True, "zip needs lists of one length, not a: 3, T: 2"),
        ({"a": [1, 2], "T": 5}, True, "a: 2, T: 1"),
        ({"a": [1, 2], "T": []}, False, "param 'T': the list is empty"),
        ({"a": [1, {"x": 1}]}, False, "param 'a' must be a string, number or boolean"),
        ({"a": [[1, 2]]}, False, "param 'a' must be a string, number or boolean"),
        ({"a": [None]}, False, "param 'a' must be a string, number or boolean"),
        ({"a": [float("nan")]}, False, "is not a JSON number"),
        ({"not-a-name": [1]}, False, "must be an identifier"),
        ({}, False, "no params to sweep"),
        ({"a": list(range(1001)), "b": list(range(1000))}, False, "1001000 combinations"),
    ],
)
def test_expand_refuses(params: dict, zip_lists: bool, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        sweeps.expand(params, zip_lists=zip_lists)
    assert needle in str(info.value)


def test_default_key_is_the_params_in_name_order() -> None:
    assert sweeps.default_key({"a": 4.0, "T": 300}) == "T=300,a=4.0"
    assert sweeps.default_key({"phase": "fcc", "hot": False}) == "hot=false,phase=fcc"


def test_sweep_specs_render_command_and_key_and_carry_the_fields() -> None:
    specs = sweeps.sweep_specs(
        "lmp -var T {T} -var a {a} -in in.lmp",
        {"a": [4.0, 4.05], "T": [300, 600]},
        key="a{a}-T{T}",
        priority=3,
        dataset="fcc",
        tags=["al"],
        run_args={"walltime": 600},
        parents=["relax"],
    )
    assert [(s.key, s.command, s.params) for s in specs] == [
        ("a4.0-T300", "lmp -var T 300 -var a 4.0 -in in.lmp", {"T": 300, "a": 4.0}),
        ("a4.0-T600", "lmp -var T 600 -var a 4.0 -in in.lmp", {"T": 600, "a": 4.0}),
        ("a4.05-T300", "lmp -var T 300 -var a 4.05 -in in.lmp", {"T": 300, "a": 4.05}),
        ("a4.05-T600", "lmp -var T 600 -var a 4.05 -in in.lmp", {"T": 600, "a": 4.05}),
    ]
    for spec in specs:
        assert (spec.priority, spec.dataset, spec.tags) == (3, "fcc", ["al"])
        assert (spec.run_args, spec.parents) == ({"walltime": 600}, ["relax"])


def test_sweep_specs_default_keys_and_zip() -> None:
    specs = sweeps.sweep_specs("echo {x} {y}", {"y": ["p", "q"], "x": [1, 2]}, zip_lists=True)
    assert [(s.key, s.command) for s in specs] == [("x=1,y=p", "echo 1 p"), ("x=2,y=q", "echo 2 q")]


def test_sweep_specs_refuse_a_key_two_combinations_share() -> None:
    with pytest.raises(ValueError) as info:
        sweeps.sweep_specs("echo {a} {T}", {"a": [1, 2], "T": [300]}, key="T{T}")
    assert "key 'T300' comes from both T=300,a=1 and T=300,a=2" in str(info.value)


def test_sweep_specs_refuse_a_bad_field_and_a_bad_placeholder() -> None:
    with pytest.raises(ValidationError, match="colour"):
        sweeps.sweep_specs("echo {a}", {"a": [1]}, colour="red")
    with pytest.raises(ValueError, match=r"placeholder \{b\} is not a param"):
        sweeps.sweep_specs("echo {a}", {"a": [1]}, key="k{b}")
