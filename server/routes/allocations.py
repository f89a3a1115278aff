"""/api/v1/allocations: elastic allocation — the backlog autoscalers size batch jobs for,
the jobs they submitted, and the lease one autoscaler holds for its name. Submitters and
admins only: an agent token can neither read nor write them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from farmhand import wire
from farmhand.server.allocations import backlog, jobs
from farmhand.server.routes.deps import DbDep, NowDep, SubmitterDep, json_response
from farmhand.server.routes.openapi import (
    ALLOCATION,
    ALLOCATION_UPDATE,
    AUTOSCALER_ACQUIRE,
    AUTOSCALER_RELEASE,
    AUTOSCALER_RENEW,
    errors,
)

router = APIRouter(tags=["allocations"])
Name = Annotated[str, Path(min_length=1, max_length=200, pattern=wire.allocations.NAME)]


@router.get(
    "/allocations/backlog",
    response_model=wire.Backlog,
    summary="Ready records by what they need",
    responses=errors(422),
)
def get_backlog(
    db: DbDep,
    _: SubmitterDep,
    campaign_id: wire.Id | None = None,
    dataset: wire.Text | None = Query(None, max_length=200),
) -> wire.Backlog:
    """The ready records (of one campaign, one dataset) grouped by runner, cores, GPUs,
    memory and walltime, largest group first: what an autoscaler sizes its batch jobs for.
    Records past the first groups are counted in `other`."""
    with db.read() as session:
        return backlog.backlog(session, campaign_id=campaign_id, dataset=dataset)


@router.get(
    "/allocations",
    response_model=wire.Allocations,
    summary="List batch jobs autoscalers submitted",
    responses=errors(422),
)
def list_allocations(
    db: DbDep,
    _: SubmitterDep,
    autoscaler: wire.Text | None = Query(None, max_length=200),
    live: bool = Query(False, description="only jobs still pending or running"),
) -> wire.Allocations:
    """Allocations newest first, each with the agents that registered from its job, and
    every autoscaler's lease and last status (idle, records no job could fit)."""
    with db.read() as session:
        return jobs.list_(session, autoscaler=autoscaler, live=live)


@router.post(
    "/allocations",
    status_code=201,
    response_model=wire.Allocation,
    summary="Record a submitted batch job",
    responses=errors(404, 409, 413, 422),
    openapi_extra=ALLOCATION,
)
def create_allocation(
    body: wire.AllocationCreate, db: DbDep, now: NowDep, _: SubmitterDep
) -> Response:
    """The autoscaler holding the lease on `autoscaler` submitted this job. A token that is
    not the lease's live one, or a job already recorded, gets 409 and changes nothing."""
    with db.write() as session:
        return json_response(jobs.create(session, body=body, now=now), status_code=201)


@router.patch(
    "/allocations/{allocation_id}",
    response_model=wire.Allocation,
    summary="Change a batch job's state",
    responses=errors(404, 409, 413, 422),
    openapi_extra=ALLOCATION_UPDATE,
)
def update_allocation(
    allocation_id: wire.Id, body: wire.AllocationUpdate, db: DbDep, now: NowDep, _: SubmitterDep
) -> Response:
    """The job's state as the batch system says (pending, running, ended, cancelled,
    failed), fenced by the autoscaler's lease token (409 when it is not the live one)."""
    with db.write() as session:
        answer = jobs.update(session, allocation_id=allocation_id, body=body, now=now)
        return json_response(answer)


@router.post(
    "/allocations/autoscalers/{name}/acquire",
    response_model=wire.Autoscaler,
    summary="Take an autoscaler's lease",
    responses=errors(409, 413, 422),
    openapi_extra=AUTOSCALER_ACQUIRE,
)
def acquire(
    name: Name, body: wire.AutoscalerAcquire, db: DbDep, now: NowDep, _: SubmitterDep
) -> Response:
    """Act for `name` (a scheduler and its filters) for `ttl` seconds; the answer carries
    the fencing token. 409 while another holder's lease is live: two autoscalers with the
    same filters never both submit."""
    with db.write() as session:
        return json_response(jobs.acquire(session, name=name, body=body, now=now))


@router.post(
    "/allocations/autoscalers/{name}/renew",
    response_model=wire.Autoscaler,
    summary="Renew an autoscaler's lease",
    responses=errors(404, 409, 413, 422),
    openapi_extra=AUTOSCALER_RENEW,
)
def renew(
    name: Name, body: wire.AutoscalerRenew, db: DbDep, now: NowDep, _: SubmitterDep
) -> Response:
    """Extend the lease and store the autoscaler's status; 409 if the token is not live."""
    with db.write() as session:
        return json_response(jobs.renew(session, name=name, body=body, now=now))


@router.post(
    "/allocations/autoscalers/{name}/release",
    response_model=wire.Autoscaler,
    summary="Give up an autoscaler's lease",
    responses=errors(404, 409, 413, 422),
    openapi_extra=AUTOSCALER_RELEASE,
)
def release(
    name: Name, body: wire.AutoscalerRelease, db: DbDep, now: NowDep, _: SubmitterDep
) -> Response:
    """End the lease now (the autoscaler stops); another may acquire it at once."""
    with db.write() as session:
        return json_response(jobs.release(session, name=name, token=body.token, now=now))
