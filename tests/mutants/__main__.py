"""`python -m tests.mutants`: run the mutations (see the package docstring)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import tests.mutants as package
from tests.mutants import MUTANTS, ROOT, Mutant


def _unchanged_in_git(path: Path) -> bool:
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return not status.stdout.strip()


def apply(mutant: Mutant) -> str:
    """Write the mutation into its file; return the original text."""
    path = ROOT / mutant.path
    original = path.read_text()
    count = original.count(mutant.find)
    if count != 1:
        raise SystemExit(
            f"mutants: {mutant.name}: expected the text once in {mutant.path}, found it "
            f"{count} times; update the entry in tests/mutants/"
        )
    path.write_text(original.replace(mutant.find, mutant.replace))
    return original


def survives(mutant: Mutant) -> bool:
    """Run the mutant's tests with it applied; True when they all pass (a survivor)."""
    path = ROOT / mutant.path
    if not _unchanged_in_git(path):
        raise SystemExit(f"mutants: {mutant.path} has uncommitted changes; commit or stash them")
    original = apply(mutant)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    """Run the mutations named (or all); print each verdict and the survivors."""
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=package.__doc__)
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(unknown)}; see --list")
    chosen = [known[name] for name in args.names] if args.names else MUTANTS
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name:32} {mutant.path}: {mutant.why}")
        return 0
    survivors = []
    for mutant in chosen:
        started = time.monotonic()
        survived = survives(mutant)
        verdict = "SURVIVED" if survived else "caught"
        print(f"{verdict:8} {mutant.name} ({time.monotonic() - started:.0f} s)", flush=True)
        if survived:
            survivors.append(mutant)
    if survivors:
        print(f"\n{len(survivors)} of {len(chosen)} mutations survived:")
        for mutant in survivors:
            print(f"  {mutant.name}: {mutant.why}\n    tests: {' '.join(mutant.tests)}")
        return 1
    print(f"\nno survivors: the tests caught all {len(chosen)} mutations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
