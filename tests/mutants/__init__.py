"""`make mutants`: apply known mutations one at a time and check that the tests catch each.

Every mutation (server.py, agent.py) is a bug that once got through (or nearly did): a wrong
join that ids lining up hid, a wake call nobody tested. Each names the file, one exact piece of
its text, what to put in its place, and the tests that must fail with it applied. A mutation
the tests survive is printed as a survivor and the command exits 1. The list grows with each
bug fixed.

    python -m tests.mutants            # every mutation
    python -m tests.mutants --list     # names only
    python -m tests.mutants NAME...    # just these

The mutations live in `server.py` and `agent.py` here, by the side they break. Files are
changed in place and restored afterwards (also on Ctrl-C); a file with uncommitted
changes is refused, so a restore can never lose work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: `find` (exactly once in `path`) becomes `replace`."""

    name: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]
    why: str


def _all() -> list[Mutant]:
    from tests.mutants import agent, server

    return [*server.MUTANTS, *agent.MUTANTS]


MUTANTS: list[Mutant] = _all()
