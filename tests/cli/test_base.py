"""Argument types and checks the `farmhand` subcommands share, and the parser's new flags."""

from __future__ import annotations

import argparse

import pytest

from farmhand.cli.base import CliError, assignment, assignments, check_force
from farmhand.cli.main import build_parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timeout=30", ("timeout", 30)),
        ("timeout=2.5", ("timeout", 2.5)),
        ("runner=podman", ("runner", "podman")),
        ('env={"FIX": "1"}', ("env", {"FIX": "1"})),
        ("keep_workdir=true", ("keep_workdir", True)),
        ("note=", ("note", "")),
        ("note=a=b", ("note", "a=b")),
        ('name="quoted"', ("name", "quoted")),
        ("x=NaN", ("x", "NaN")),
        (" walltime =01:00:00", ("walltime", "01:00:00")),
    ],
)
def test_assignment_values_are_json_when_they_parse(text: str, expected: tuple) -> None:
    assert assignment(text) == expected


@pytest.mark.parametrize("text", ["timeout", "=3", " =3"])
def test_assignment_needs_a_key_and_an_equals_sign(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected key=value"):
        assignment(text)


def test_assignments_make_one_table_and_refuse_a_key_twice() -> None:
    assert assignments(None) == {}
    assert assignments([("a", 1), ("b", "x")]) == {"a": 1, "b": "x"}
    with pytest.raises(CliError, match="a is given twice"):
        assignments([("a", 1), ("a", 2)])


def test_force_ignores_success_alone_is_refused() -> None:
    check_force(argparse.Namespace(force=True, force_ignores_success=True))
    check_force(argparse.Namespace(force=False, force_ignores_success=False))
    with pytest.raises(CliError, match="pass --force --force-ignores-success"):
        check_force(argparse.Namespace(force=False, force_ignores_success=True))


def test_agent_filters_repeat() -> None:
    args = build_parser().parse_args(
        [
            "agent",
            "--campaign",
            "relax",
            "--campaign",
            "relax:2",
            "--dataset",
            "a",
            "--dataset",
            "b",
        ]
    )
    assert args.campaign == ["relax", "relax:2"] and args.dataset == ["a", "b"]
    args = build_parser().parse_args(["agent"])
    assert args.campaign is None and args.dataset is None


def test_retry_and_campaign_new_parse_their_flags() -> None:
    args = build_parser().parse_args(
        ["retry", "--orphans", "--campaign", "c", "--run-arg", "timeout=5", "--run-arg", "x=y"]
    )
    assert (args.records, args.orphans, args.campaign) == ([], True, "c")
    assert args.run_arg == [("timeout", 5), ("x", "y")]
    args = build_parser().parse_args(
        ["campaign", "new", "relax", "--based-on", "relax:1", "--default", "max_attempts=2"]
    )
    assert (args.name, args.based_on, args.default) == ("relax", "relax:1", [("max_attempts", 2)])
