"""Whether this agent can take a lease, decided the moment it arrives.

| the lease's record…                         | verdict                                   |
|---------------------------------------------|-------------------------------------------|
| names a runner this agent does not offer    | refuse: give the lease back (no attempt)  |
| asks for more than this agent has in total  | refuse: give the lease back (no attempt)  |
| has malformed `runner`/`cores`/`gpus`/…     | error: the attempt fails with the reason  |
| fits, now or once running records finish    | run: wait for its share, then run it      |

Once the server filters claims by the runners and free resources every claim sends, refusals
only happen when a definition changed under a running agent, or a runner broke (it could
not start commands: `Runners.failed`) after the claim; until then they are how an agent
copes with records meant for others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from farmhand import wire
from farmhand.runtime.resources.allocation import Allocator
from farmhand.runtime.resources.node import Need, requested
from farmhand.runtime.runners import DEFAULT_RUNNER, Runner
from farmhand.runtime.runners.definitions import Runners

__all__ = ["Plan", "plan"]


@dataclass(frozen=True)
class Plan:
    """How to run one lease: a runner and a need, or why not (`refusal` or `error`)."""

    runner: Runner | None = None
    need: Need = field(default_factory=Need)
    refusal: str | None = None  # give the lease back with this reason
    error: str | None = None  # fail the attempt with this message


def plan(lease: wire.Lease, runners: Runners, allocator: Allocator) -> Plan:
    """The verdict of the table above for `lease`."""
    name = lease.run_args.get("runner", DEFAULT_RUNNER)
    if not isinstance(name, str):
        return Plan(error=f"run_args.runner must be a runner name, not {name!r}")
    runner = runners.get(name)
    if runner is None:
        problem = runners.problem(name)
        if problem is not None:
            why = f"runner {name!r} is not offered here: {problem}"
        else:
            offered = ", ".join(repr(n) for n in runners.offered())
            why = f"runner {name!r} is not defined here (this agent offers {offered})"
        return Plan(refusal=why)
    try:
        need = requested(lease.run_args)
    except ValueError as exc:
        return Plan(error=str(exc))
    too_big = allocator.never_fits(need)
    if too_big is not None:
        return Plan(refusal=too_big)
    return Plan(runner=runner, need=need)
