"""Record calls for `FarmhandClient`: list, read, cancel and retry records (by id or by a
filter, request after request)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from farmhand import wire
from farmhand.client.graph import parents_first

if TYPE_CHECKING:
    from farmhand.client.api import FarmhandClient

__all__ = ["RecordCalls", "page_params"]


def _without_parents(spec: wire.RecordSpec, keys: set[str]) -> wire.RecordSpec:
    """`spec` without the parents named by `keys`."""
    kept = [p for p in spec.parents if not (isinstance(p, str) and p in keys)]
    return spec if len(kept) == len(spec.parents) else spec.model_copy(update={"parents": kept})


def _add(total: wire.RecordsCreated, answer: wire.RecordsCreated) -> None:
    """Add one chunk's answer to the running `total`."""
    total.created += answer.created
    total.skipped += answer.skipped
    total.replaced += answer.replaced
    total.replaced_keys = [*total.replaced_keys, *answer.replaced_keys][:100]
    total.skipped_keys = [*total.skipped_keys, *answer.skipped_keys][:100]
    total.differing += answer.differing
    total.differs = [*total.differs, *answer.differs][:100]
    total.created_campaign = total.created_campaign or answer.created_campaign


def page_params(after: int | None, limit: int, filters: dict[str, Any]) -> dict[str, Any]:
    """Query parameters of a listing: the filters given (enums by value), limit, after."""
    params = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
    params["limit"] = limit
    if after is not None:
        params["after"] = after
    return params


class RecordCalls:
    """The records part of `FarmhandClient` (mixed into it)."""

    def submit(
        self: FarmhandClient,
        campaign: int | wire.CampaignCreate,
        records: list[wire.RecordSpec],
        *,
        force: bool = False,
        force_ignores_success: bool = False,
        dry_run: bool = False,
    ) -> wire.RecordsCreated:
        """Bulk-create records in campaign `campaign` (an id), or in a new campaign (a
        `wire.CampaignCreate`) made by the first request in its transaction, so a refused
        submission leaves none. Sent in chunks the server accepts.

        Keys the campaign already has are skipped, or with `force` given the new spec and
        queued again when it changed (done ones only with `force_ignores_success` too). Each
        chunk is one transaction; when there are several, parents are sent before their
        children so that every chunk names only parents the server already has. `dry_run`
        checks every chunk and changes nothing (in it, a parent an earlier chunk brings is
        not sent: the server does not have it yet).
        """
        step = wire.MAX_RECORDS_PER_REQUEST
        if len(records) > step:
            records = parents_first(records)
        total = wire.RecordsCreated(created=0, skipped=0, dry_run=dry_run)
        earlier: set[str] = set()
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            if dry_run and earlier:
                chunk = [_without_parents(spec, earlier) for spec in chunk]
            body = wire.RecordsCreate(
                campaign_id=campaign if isinstance(campaign, int) else None,
                campaign=None if isinstance(campaign, int) else campaign,
                records=chunk,
                force=force,
                force_ignores_success=force_ignores_success,
                dry_run=dry_run,
            )
            # No null campaign(_id) and no dry_run=false: a server before them takes it.
            sent = self._lean(body, exclude=None if dry_run else {"dry_run"})
            answer = self._model(wire.RecordsCreated, "POST", "/records", json=sent)
            _add(total, answer)
            earlier.update(spec.key for spec in chunk)
            if answer.created_campaign is not None:
                campaign = answer.created_campaign  # made with the first chunk: the rest go there
        return total

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
        body = self._tree(wire.RecordIds(ids=ids or [], filter=filter))
        if filter is None:
            del body["filter"]  # a server older than filters refuses the field
        else:
            body["filter"] = self._tree(filter, lean=True)  # nor does one know key_prefix or tag
        return self._model(wire.RecordsChanged, "POST", "/records/cancel", json=body)

    def count_records(self: FarmhandClient, chosen: wire.RecordFilter) -> wire.RecordCount:
        """How many records `chosen` matches (all of them), by state: what a cancel or retry
        with this filter would look at."""
        return self._model(wire.RecordCount, "POST", "/records/count", json=self._lean(chosen))

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
        sent = self._tree(body)
        if filter is None:
            del sent["filter"]  # a server older than filters refuses the field
        else:
            sent["filter"] = self._tree(filter, lean=True)  # nor does one know key_prefix or tag
        return self._model(wire.RecordsChanged, "POST", "/records/retry", json=sent)
