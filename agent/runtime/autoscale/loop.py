"""The autoscaler's loop: each cycle reads its jobs from the server, asks the batch system
which still live, reads the backlog, lets the planner decide and carries the plan out.

All state lives on the server (allocations and the autoscaler's lease), so a restarted
autoscaler adopts the jobs it finds there (and jobs in the batch system that carry its job
name but were never recorded: it died between submitting and recording) instead of
submitting more. A failed submission backs off exponentially, saying why; a limit the batch
system names (too many jobs) lowers the autoscaler's own maximum to what it has.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from farmhand import wire
from farmhand.client import Conflict, FarmhandClient, FarmhandError
from farmhand.runtime.autoscale import planner
from farmhand.runtime.autoscale.schedulers import JobRequest, Scheduler, SchedulerError

log = logging.getLogger("farmhand.autoscale")


@dataclass
class Options:
    """What `farmhand autoscale` was told."""

    name: str
    time_limit: float
    max_jobs: int = 4
    max_pending: int = 1
    nodes: int = 1
    cores: int | None = None
    gpus: int | None = None
    memory_mb: int | None = None
    runners: frozenset[str] | None = None
    campaign_id: int | None = None
    dataset: str | None = None
    agent_args: list[str] = field(default_factory=list)
    interval: float = 30.0
    lease_ttl: float = 120.0
    max_backoff: float = 600.0


class Autoscaler:
    """One autoscaler: `run()` until stopped (or one cycle with `once`)."""

    def __init__(self, client: FarmhandClient, scheduler: Scheduler, options: Options):
        self.client, self.scheduler, self.options = client, scheduler, options
        self.stop = threading.Event()
        self.token: str | None = None
        self.shape = self._shape()
        self.effective_max = options.max_jobs
        self.failures, self.backoff_until, self.last_error = 0, 0.0, ""
        self.status: dict[str, Any] = {}
        self._said: dict[str, str] = {}
        self.job_name = "fh-" + "".join(
            c if c.isalnum() or c in "-_." else "_" for c in options.name
        )

    # --- the lease -----------------------------------------------------------------------

    def acquire(self, *, wait: bool) -> bool:
        """Take the autoscaler's lease; with `wait`, until the holder's runs out."""
        holder = f"{socket.gethostname()}:{os.getpid()}"
        while not self.stop.is_set():
            try:
                lease = self.client.acquire_autoscaler(
                    self.options.name, holder=holder, ttl=self.options.lease_ttl
                )
            except Conflict as exc:
                if not wait:
                    log.error("%s", exc.detail)
                    return False
                self._say("lease", f"waiting: {exc.detail}")
                self.stop.wait(min(self.options.interval, 5.0))
                continue
            self.token = lease.token
            log.info("autoscaler %s: holding its lease as %s", self.options.name, holder)
            return True
        return False

    def release(self) -> None:
        """Give the lease up, so another autoscaler may take over at once."""
        if self.token is None:
            return
        try:
            self.client.renew_autoscaler(
                self.options.name, token=self.token, ttl=self.options.lease_ttl, status=self.status
            )
            self.client.release_autoscaler(self.options.name, token=self.token)
        except FarmhandError as exc:
            log.warning("could not release the lease: %s", exc)
        self.token = None

    # --- the loop ------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Cycle every `interval` seconds until stopped; 1 if the lease is someone else's."""
        if not self.acquire(wait=not once):
            return 0 if self.stop.is_set() else 1
        try:
            while not self.stop.is_set():
                try:
                    self.cycle()
                except Conflict as exc:  # the lease was lost (expired and taken over)
                    log.warning("lost the lease: %s", exc.detail)
                    self.token = None
                    if once or not self.acquire(wait=True):
                        return 1
                    continue
                except FarmhandError as exc:
                    log.warning("the server did not answer this cycle: %s", exc)
                if once:
                    break
                self.stop.wait(self.options.interval)
        finally:
            self.release()
        return 0

    def cycle(self) -> planner.Plan | None:
        """One look and one decision; the plan carried out (None: the batch system did
        not answer, so nothing was decided)."""
        assert self.token is not None
        token = self.token
        self.client.renew_autoscaler(
            self.options.name, token=token, ttl=self.options.lease_ttl, status=self.status
        )
        jobs = self._jobs(token)
        if jobs is None:
            return None
        backlog = self.client.backlog(
            campaign_id=self.options.campaign_id, dataset=self.options.dataset
        )
        needs = [
            planner.Need(g.count, g.runner, g.cores, g.gpus, g.memory_mb, g.walltime)
            for g in backlog.groups
        ]
        if backlog.other:
            needs.append(planner.Need(backlog.other))
        self._lift_limit()
        plan = planner.plan(
            needs,
            jobs,
            self.shape,
            max_jobs=self.effective_max,
            max_pending=self.options.max_pending,
        )
        self._cancel(plan.cancel, token)
        submitted = self._submit(plan, token)
        self._report(plan, jobs, submitted)
        self.client.renew_autoscaler(
            self.options.name, token=token, ttl=self.options.lease_ttl, status=self.status
        )
        return plan

    # --- the steps -----------------------------------------------------------------------

    def _jobs(self, token: str) -> list[planner.Job] | None:
        """The live jobs, after bringing the server's allocations up to date."""
        listed = self.client.allocations(autoscaler=self.options.name, live=True).allocations
        try:
            live = self.scheduler.query([a.job_id for a in listed], job_name=self.job_name)
        except SchedulerError as exc:
            self._say("query", f"cannot ask {self.scheduler.name} about the jobs: {exc}")
            self.status = {**self.status, "message": f"no answer from {self.scheduler.name}"}
            return None
        known = {a.job_id: a for a in listed}
        for allocation in listed:
            state = live.get(allocation.job_id, "ended")
            if state != allocation.state.value:
                self._set_state(allocation.id, state, token)
                log.info("%s job %s: %s", self.scheduler.name, allocation.job_id, state)
        sizes = {a.job_id: a.submitted_for for a in listed}
        for job_id, state in live.items():
            if job_id in known:
                continue
            log.info(
                "%s job %s carries this autoscaler's name: adopting it", self.scheduler.name, job_id
            )
            body = wire.AllocationCreate(
                autoscaler=self.options.name,
                token=token,
                scheduler=self.scheduler.name,
                job_id=job_id,
                state=wire.AllocationState(state),
                submitted_for={"adopted": True, "cores": int(self.shape.cores or 1)},
            )
            sizes[job_id] = self.client.create_allocation(body).submitted_for
        return [
            planner.Job(
                job_id,
                state,
                cores=float(sizes[job_id].get("cores") or 1),
                gpus=int(sizes[job_id].get("gpus") or 0),
                nodes=int(sizes[job_id].get("nodes") or 1),
            )
            for job_id, state in sorted(live.items())
        ]

    def _cancel(self, job_ids: list[str], token: str) -> None:
        if not job_ids:
            return
        try:
            self.scheduler.cancel(job_ids)
        except SchedulerError as exc:
            self._say("cancel", f"could not cancel pending jobs {', '.join(job_ids)}: {exc}")
            return
        listed = self.client.allocations(autoscaler=self.options.name, live=True).allocations
        for allocation in listed:
            if allocation.job_id in job_ids:
                self._set_state(allocation.id, "cancelled", token, note="no ready records left")
        log.info("cancelled pending job(s) %s: nothing waits for them", ", ".join(job_ids))

    def _submit(self, plan: planner.Plan, token: str) -> int:
        """Submit the plan's jobs unless backing off; how many were submitted."""
        if not plan.submit:
            return 0
        wait = self.backoff_until - time.monotonic()
        if wait > 0:
            self._say("backoff", f"not submitting for {wait:.0f}s more: {self.last_error}")
            return 0
        done = 0
        for size in plan.submit:
            request = JobRequest(
                name=self.job_name,
                nodes=size.nodes,
                cores=size.cores,
                gpus=size.gpus,
                memory_mb=size.memory_mb,
                time_limit=self.options.time_limit,
                agent_args=self.options.agent_args,
            )
            try:
                job_id = self.scheduler.submit(request)
            except SchedulerError as exc:
                self._failed(exc)
                break
            done += 1
            self.failures, self.last_error = 0, ""
            submitted_for = {
                "records": size.records,
                "nodes": size.nodes,
                "cores": size.cores,
                "gpus": size.gpus,
                "memory_mb": size.memory_mb,
                "time_limit": self.options.time_limit,
            }
            body = wire.AllocationCreate(
                autoscaler=self.options.name,
                token=token,
                scheduler=self.scheduler.name,
                job_id=job_id,
                submitted_for=submitted_for,
            )
            self.client.create_allocation(body)
            log.info(
                "submitted %s job %s: %d node(s) x %d core(s)%s for %d ready record(s)",
                *(self.scheduler.name, job_id, size.nodes, size.cores),
                f", {size.gpus} GPU(s)" if size.gpus else "",
                size.records,
            )
        return done

    def _failed(self, exc: SchedulerError) -> None:
        """Back off after a failed submission: interval * 2^failures, at most max_backoff."""
        self.failures += 1
        delay = min(self.options.max_backoff, self.options.interval * 2**self.failures)
        self.backoff_until = time.monotonic() + delay
        self.last_error = str(exc)
        if exc.limit:
            have = len(self._live_ids())
            self.effective_max = max(1, have)
            log.error(
                "%s; the batch system's limit: at most %d job(s) from now on; next try in %.0fs",
                *(exc, self.effective_max, delay),
            )
        else:
            log.error("%s; next try in %.0fs", exc, delay)

    def _lift_limit(self) -> None:
        """After the wait, try one job more than the limit allowed (it may have changed)."""
        if self.effective_max < self.options.max_jobs and time.monotonic() >= self.backoff_until:
            self.effective_max += 1

    def _live_ids(self) -> list[str]:
        listed = self.client.allocations(autoscaler=self.options.name, live=True).allocations
        return [a.job_id for a in listed]

    def _set_state(
        self, allocation_id: int, state: str, token: str, note: str | None = None
    ) -> None:
        body = wire.AllocationUpdate(token=token, state=wire.AllocationState(state), note=note)
        self.client.update_allocation(allocation_id, body)

    def _report(self, plan: planner.Plan, jobs: list[planner.Job], submitted: int) -> None:
        """Log what changed, and keep the status the server shows."""
        unfit = [
            {"count": u.count, "reason": u.reason, "runner": u.need.runner} for u in plan.unfit
        ]
        for item in unfit:
            self._say(
                f"unfit:{item['reason']}",
                f"not submitting for {item['count']} ready record(s): {item['reason']}",
                level=logging.WARNING,
            )
        pending = sum(j.state == "pending" for j in jobs if j.job_id not in plan.cancel)
        self.status = {
            "message": plan.message,
            "idle": plan.idle,
            "ready": plan.ready,
            "unfit": unfit,
            "pending": pending + submitted,
            "running": sum(j.state == "running" for j in jobs),
            "max_jobs": self.effective_max,
            "scheduler": self.scheduler.name,
            "last_error": self.last_error or None,
        }
        self._say("plan", plan.message)

    def _say(self, topic: str, message: str, level: int = logging.INFO) -> None:
        """Log `message` once, and again only when the topic's message changes."""
        if self._said.get(topic) != message:
            self._said[topic] = message
            log.log(level, "%s", message)

    def _shape(self) -> planner.Shape:
        """What one job may hold: the options, else what the batch system says of a node."""
        o = self.options
        node = self.scheduler.node_config()
        fixed = {
            k
            for k, v in (("cores", o.cores), ("gpus", o.gpus), ("memory_mb", o.memory_mb))
            if v is not None
        }
        if node is not None and node.time_limit is not None and o.time_limit > node.time_limit:
            log.warning(
                "--time-limit %gs is more than the partition allows (%gs)",
                o.time_limit,
                node.time_limit,
            )
        return planner.Shape(
            time_limit=o.time_limit,
            cores=o.cores if o.cores is not None else node and node.cores,
            gpus=o.gpus if o.gpus is not None else node and node.gpus,
            memory_mb=o.memory_mb if o.memory_mb is not None else node and node.memory_mb,
            nodes=o.nodes,
            runners=o.runners,
            fixed=frozenset(fixed),
        )
