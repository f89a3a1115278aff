"""The run_args farmhand reads are checked where they enter the wire (`wire.check_run_args`):
a record's own, a campaign's defaults and a retry's; durations take one set of forms."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from farmhand import wire

FORMS = "(seconds, 30m, 2h, 1d, MM:SS, HH:MM:SS or D-HH:MM:SS)"

GOOD = [
    {"timeout": "1h", "walltime": "01:30:00", "checkpoint_interval": "10m"},
    {"timeout": 90, "walltime": 1.5, "checkpoint_interval": 0},
    {"max_attempts": 3, "cores": 0.5, "gpus": 0, "runner": "lammps", "image": "x.sif"},
    {"archive": False, "unpack_parents": True, "env": {"A": 1}, "archive_exclude": "*.tmp"},
    {"timeout": None, "mine": "anything", "memory": "4G"},
]
BAD = [
    ({"timeout": "soon"}, f"run_args.timeout must be a positive duration {FORMS}, got 'soon'"),
    ({"timeout": 0}, "run_args.timeout must be a positive duration"),
    ({"walltime": "0"}, "run_args.walltime must be a positive duration"),
    ({"checkpoint_interval": -1}, f"run_args.checkpoint_interval must be a duration {FORMS}"),
    ({"max_attempts": "two"}, "run_args.max_attempts must be a whole number >= 1, got 'two'"),
    ({"max_attempts": 0}, "run_args.max_attempts must be a whole number >= 1, got 0"),
    ({"gpus": 1.5}, "run_args.gpus must be a whole number >= 0"),
    ({"cores": 0}, "run_args.cores must be a positive number, got 0"),
    ({"runner": ""}, "run_args.runner must be a runner name"),
    ({"archive": "yes"}, "run_args.archive must be true or false, got 'yes'"),
    ({"env": ["A=1"]}, "run_args.env must be a table of NAME = value"),
    ({"archive_exclude": [""]}, "run_args.archive_exclude must be a list of patterns"),
]


@pytest.mark.parametrize("run_args", GOOD)
def test_what_the_agent_reads_passes(run_args: dict) -> None:
    assert wire.check_run_args(run_args) is run_args
    assert wire.RecordSpec(key="k", command="x", run_args=run_args).run_args == run_args


@pytest.mark.parametrize(("run_args", "message"), BAD)
def test_what_the_agent_would_refuse_is_refused_where_it_enters(
    run_args: dict, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        wire.check_run_args(run_args)
    for build in (
        lambda: wire.RecordSpec(key="k", command="x", run_args=run_args),
        lambda: wire.CampaignCreate(name="c", defaults=run_args),
        lambda: wire.RecordsRetry(ids=[1], run_args=run_args),
    ):
        with pytest.raises(ValidationError, match=re.escape(message.split(" (")[0])):
            build()


def test_the_agent_reads_a_timeout_as_it_reads_a_walltime() -> None:
    for text, seconds in (("90", 90.0), ("30m", 1800.0), ("1h", 3600.0), ("01:00:00", 3600.0)):
        assert wire.timeout_seconds({"timeout": text}) == seconds
        assert wire.walltime_seconds({"walltime": text}) == seconds
    assert wire.timeout_seconds({}) is None
