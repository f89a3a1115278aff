"""Record calls for `FarmhandClient`: list, read, cancel and retry records (by id or by a
filter, request after request)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from farmhand import wire

if TYPE_CHECKING:
    from farmhand.client.api import FarmhandClient

__all__ = ["RecordCalls", "page_params"]


def page_params(after: int | None, limit: int, filters: dict[str, Any]) -> dict[str, Any]:
    """Query parameters of a listing: the filters given (enums by value), limit, after."""
    params = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
    params["limit"] = limit
    if after is not None:
        params["after"] = after
    return params


class RecordCalls:
    """The records part of `FarmhandClient` (mixed into it)."""

    def records_page(
        self: FarmhandClient, *, after: int | None = None, limit: int = 500, **filters: Any
    ) -> wire.Page[wire.Record]:
        """One page of records; filters: campaign_id, state, key, dataset, where (filters on
        params, a string or a list), count (True: the page says how many match in all)."""
        return self._model(
            wire.Page[wire.Record], "GET", "/records", params=page_params(after, limit, filters)
        )

    def records(self: FarmhandClient, **filters: Any) -> Iterator[wire.Record]:
        """Every record matching the filters, page after page."""
        after = None
        while True:
            page = self.records_page(after=after, **filters)
            yield from page.items
            if page.next is None:
                return
            after = page.next

    def record(self: FarmhandClient, record_id: int) -> wire.Record:
        """One record with its runs and derived run_args."""
        return self._model(wire.Record, "GET", f"/records/{record_id}")

    def cancel(
        self: FarmhandClient,
        ids: list[int] | None = None,
        *,
        filter: wire.RecordFilter | None = None,
    ) -> wire.RecordsChanged:
        """Cancel records by id (all or nothing), or what `filter` matches that has not ended
        (one request's worth: follow `next` as `filter.after`; `act_by_filter` does).
        Running ones are stopped at their agent's next heartbeat."""
        body = self._body(wire.RecordIds(ids=ids or [], filter=filter))
        if filter is None:
            del body["filter"]  # a server older than filters refuses the field
        return self._model(wire.RecordsChanged, "POST", "/records/cancel", json=body)

    def act_by_filter(
        self: FarmhandClient,
        call: Callable[..., wire.RecordsChanged],
        chosen: wire.RecordFilter,
        **kwargs: Any,
    ) -> wire.RecordsChanged:
        """`call` (`cancel` or `retry`) with `filter=chosen`, request after request until no
        `next`; the answers added up."""
        total = wire.RecordsChanged(changed=[])
        while True:
            part = call(filter=chosen, **kwargs)
            total.changed += part.changed
            total.skipped += part.skipped
            total.reopened += part.reopened
            if part.next is None:
                return total
            chosen = chosen.model_copy(update={"after": part.next})

    def retry(
        self: FarmhandClient,
        ids: list[int] | None = None,
        *,
        filter: wire.RecordFilter | None = None,
        orphans: bool = False,
        campaign_id: int | None = None,
        force: bool = False,
        force_ignores_success: bool = False,
        run_args: dict[str, Any] | None = None,
    ) -> wire.RecordsChanged:
        """Re-queue records with a fresh set of attempts (see `wire.RecordsRetry`).

        Failed, cancelled and orphaned records are retried, others are skipped with the
        reason unless `force` (and, for done ones, `force_ignores_success`); `filter` takes
        the records it matches instead of ids (one request's worth: see `act_by_filter`);
        `orphans` adds every orphaned record (of `campaign_id`); `run_args` apply to the next
        runs only.
        """
        body = wire.RecordsRetry(
            ids=ids or [],
            filter=filter,
            orphans=orphans,
            campaign_id=campaign_id,
            force=force,
            force_ignores_success=force_ignores_success,
            run_args=run_args,
        )
        sent = self._body(body)
        if filter is None:
            del sent["filter"]  # a server older than filters refuses the field
        return self._model(wire.RecordsChanged, "POST", "/records/retry", json=sent)
