"""Elastic allocation calls for `FarmhandClient`: the backlog, the batch jobs an
autoscaler submitted, and its lease (`farmhand autoscale`, `farmhand ls allocations`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from farmhand import wire

if TYPE_CHECKING:
    from farmhand.client.api import FarmhandClient

__all__ = ["AllocationCalls"]


class AllocationCalls:
    """The allocations part of `FarmhandClient` (mixed into it)."""

    def backlog(
        self: FarmhandClient, *, campaign_id: int | None = None, dataset: str | None = None
    ) -> wire.Backlog:
        """Ready records grouped by what they need."""
        params = {k: v for k, v in (("campaign_id", campaign_id), ("dataset", dataset)) if v}
        return self._model(wire.Backlog, "GET", "/allocations/backlog", params=params)

    def allocations(
        self: FarmhandClient, *, autoscaler: str | None = None, live: bool = False
    ) -> wire.Allocations:
        """Allocations newest first, and the autoscalers' leases and statuses."""
        params: dict[str, Any] = {"live": live}
        if autoscaler is not None:
            params["autoscaler"] = autoscaler
        return self._model(wire.Allocations, "GET", "/allocations", params=params)

    def create_allocation(self: FarmhandClient, body: wire.AllocationCreate) -> wire.Allocation:
        """Record a batch job the lease holder submitted."""
        return self._model(wire.Allocation, "POST", "/allocations", json=self._body(body))

    def update_allocation(
        self: FarmhandClient, allocation_id: int, body: wire.AllocationUpdate
    ) -> wire.Allocation:
        """A job's new state."""
        path = f"/allocations/{allocation_id}"
        return self._model(wire.Allocation, "PATCH", path, json=self._lean(body))

    def acquire_autoscaler(
        self: FarmhandClient, name: str, *, holder: str, ttl: float
    ) -> wire.Autoscaler:
        """Take the lease on `name` (Conflict while another holds it)."""
        body = wire.AutoscalerAcquire(holder=holder, ttl=ttl)
        return self._model(wire.Autoscaler, "POST", _scaler(name, "acquire"), json=self._body(body))

    def renew_autoscaler(
        self: FarmhandClient, name: str, *, token: str, ttl: float, status: dict[str, Any]
    ) -> wire.Autoscaler:
        """Keep the lease on `name` and store the status (Conflict when it is lost)."""
        body = wire.AutoscalerRenew(token=token, ttl=ttl, status=status)
        return self._model(wire.Autoscaler, "POST", _scaler(name, "renew"), json=self._body(body))

    def release_autoscaler(self: FarmhandClient, name: str, *, token: str) -> wire.Autoscaler:
        """Give the lease on `name` up."""
        body = wire.AutoscalerRelease(token=token)
        return self._model(wire.Autoscaler, "POST", _scaler(name, "release"), json=self._body(body))


def _scaler(name: str, action: str) -> str:
    return f"/allocations/autoscalers/{quote(name, safe='')}/{action}"
