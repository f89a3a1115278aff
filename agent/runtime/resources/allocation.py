"""The agent's free share: which cores, GPUs and memory its running attempts hold.

Every attempt acquires a `Grant` before it stages and gives it back when it ends. A run
that must wait reserves what it asked for: a later run is granted only what is left beside
the reservations of the runs waiting before it, so a record waiting for two GPUs is never
overtaken by later ones that would keep the GPUs busy forever, while a record that needs no
GPU can still use an idle core. The claim loop reports `free()` (held and reserved amounts
taken off) to the server and claims nothing while no cores are free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from farmhand import wire
from farmhand.runtime.resources.node import Need, NodeResources, format_number

__all__ = ["Allocator", "Grant"]

#: Tolerance for sums of fractional cores (8 slots of 0.25 must fit in 2).
EPSILON = 1e-9


@dataclass(frozen=True)
class Grant:
    """The share one run holds: its cores, its own GPUs and the memory it asked for."""

    cores: float
    gpus: tuple[str, ...] = ()
    memory_mb: int = 0

    def environment(self, *, gpus_managed: bool) -> dict[str, str]:
        """Variables telling the command its share; CUDA_VISIBLE_DEVICES only on an agent
        that has GPUs to hand out (elsewhere the command keeps what it inherited)."""
        env = {
            "OMP_NUM_THREADS": str(max(1, int(self.cores + EPSILON))),
            "FARMHAND_CORES": format_number(self.cores),
            "FARMHAND_GPUS": str(len(self.gpus)),
        }
        if gpus_managed:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        if self.memory_mb:
            env["FARMHAND_MEMORY_MB"] = str(self.memory_mb)
        return env


class Allocator:
    """Hands out shares of `total` to at most `slots` concurrent runs. Thread-safe."""

    def __init__(self, total: NodeResources, slots: int):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        self.total = total
        self.slots = slots
        #: What a record that names no `cores` takes: one slot's share of the node.
        self.share = total.cores / slots
        self._cond = threading.Condition()
        self._cores = 0.0
        self._gpus: list[str] = []  # held device ids
        self._memory = 0
        self._waiting: list[tuple[object, Need]] = []  # (ticket, need), oldest first

    @property
    def gpus_managed(self) -> bool:
        """Whether this agent hands out GPUs (and so sets CUDA_VISIBLE_DEVICES per run)."""
        return bool(self.total.gpus)

    def cores_of(self, need: Need) -> float:
        """The cores `need` takes here."""
        return self.share if need.cores is None else need.cores

    def never_fits(self, need: Need) -> str | None:
        """Why `need` exceeds this agent's totals (it could never run here), or None."""
        total, cores = self.total, self.cores_of(need)
        if cores > total.cores + EPSILON:
            return f"needs {format_number(cores)} cores; this agent has {total.cores:g}"
        if need.gpus > len(total.gpus):
            return f"needs {need.gpus} GPUs; this agent has {len(total.gpus)}"
        if total.memory_mb is not None and need.memory_mb > total.memory_mb:
            return f"needs {need.memory_mb} MiB of memory; this agent has {total.memory_mb} MiB"
        return None

    @property
    def waiting(self) -> int:
        """How many runs wait for their share."""
        with self._cond:
            return len(self._waiting)

    def free(self) -> wire.Resources:
        """What is neither held nor reserved by a waiting run: sent with every claim."""
        with self._cond:
            cores, gpus, memory = self._left([need for _, need in self._waiting])
        return wire.Resources(cores=round(cores, 6), gpus=gpus, memory_mb=memory)

    def has_room(self) -> bool:
        """Whether any cores are free, so that claiming more can help."""
        return (self.free().cores or 0.0) > EPSILON

    def shortfall(self, need: Need) -> str | None:
        """Why `need` would wait ("needs 2 GPUs …; free: 1 GPUs"), or None if it would not."""
        with self._cond:
            ahead = [n for _, n in self._waiting]
            if self._fits(need, ahead):
                return None
            cores, gpus, memory = self._left(ahead)
        waiting = f" ({len(ahead)} run(s) wait before it)" if ahead else ""
        mib = "" if memory is None else f", {memory} MiB"
        return (
            f"needs {format_number(self.cores_of(need))} cores, {need.gpus} GPUs, "
            f"{need.memory_mb} MiB; free: {format_number(cores)} cores, {gpus} GPUs{mib}" + waiting
        )

    def acquire(self, need: Need, give_up: Callable[[], bool], poll: float = 0.2) -> Grant | None:
        """Wait until `need` fits and every earlier waiter is served; None if `give_up()`
        turns true first. Raises ValueError if it could never fit."""
        reason = self.never_fits(need)
        if reason is not None:
            raise ValueError(reason)
        ticket = object()
        with self._cond:
            ahead = [n for _, n in self._waiting]
            self._waiting.append((ticket, need))
            try:
                while not self._fits(need, ahead):
                    if give_up():
                        return None
                    self._cond.wait(poll)
                    ahead = [n for t, n in self._waiting[: self._position(ticket)]]
                return self._take(need)
            finally:
                del self._waiting[self._position(ticket)]
                self._cond.notify_all()  # later waiters lose a reservation ahead of them

    def release(self, grant: Grant) -> None:
        """Give a grant back."""
        with self._cond:
            self._cores = max(0.0, self._cores - grant.cores)
            for gpu in grant.gpus:
                self._gpus.remove(gpu)
            self._memory -= grant.memory_mb
            self._cond.notify_all()

    # --- under the lock ------------------------------------------------------------------

    def _position(self, ticket: object) -> int:
        return next(i for i, (t, _) in enumerate(self._waiting) if t is ticket)

    def _left(self, reserved: list[Need]) -> tuple[float, int, int | None]:
        """What is neither held nor in `reserved`, per resource, never below zero."""
        total = self.total
        cores = total.cores - self._cores - sum(self.cores_of(n) for n in reserved)
        gpus = len(total.gpus) - len(self._gpus) - sum(n.gpus for n in reserved)
        memory = None
        if total.memory_mb is not None:
            memory = max(0, total.memory_mb - self._memory - sum(n.memory_mb for n in reserved))
        return max(0.0, cores), max(0, gpus), memory

    def _fits(self, need: Need, ahead: list[Need]) -> bool:
        """Whether `need` fits beside what is held and reserved by the runs `ahead` of it.

        Per resource, so a reservation that cannot be met yet (GPUs all busy) blocks only
        later runs that need that resource too."""
        cores, gpus, memory = self._left(ahead)
        return (
            self.cores_of(need) <= cores + EPSILON
            and need.gpus <= gpus
            and (memory is None or need.memory_mb <= memory)
        )

    def _take(self, need: Need) -> Grant:
        cores = self.cores_of(need)
        gpus = tuple([g for g in self.total.gpus if g not in self._gpus][: need.gpus])
        self._cores += cores
        self._gpus.extend(gpus)
        self._memory += need.memory_mb
        return Grant(cores=cores, gpus=gpus, memory_mb=need.memory_mb)
