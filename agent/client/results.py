"""Result calls for `FarmhandClient`: a campaign's results table, streamed, and what ended
since a cursor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from farmhand import wire
from farmhand.client.errors import ServerUnavailable, UsageError, raise_for

if TYPE_CHECKING:
    from farmhand.client.api import FarmhandClient

__all__ = ["FORMATS", "ResultCalls", "check_where"]

FORMATS = ("csv", "jsonl")


def check_where(where: str | Sequence[str] | None) -> list[str]:
    """Filters as a list, each parsed here first: UsageError naming one that is no filter
    (a typo never reaches the server, let alone reads as "every record")."""
    texts = [where] if isinstance(where, str) else list(where or ())
    for text in texts:
        try:
            wire.parse_where(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return texts


class ResultCalls:
    """The results half of `FarmhandClient` (mixed into it)."""

    def results_stream(
        self: FarmhandClient,
        campaign_id: int,
        *,
        format: str = "csv",
        state: wire.RecordState | str | None = None,
        where: str | Sequence[str] | None = None,
    ) -> Iterator[str]:
        """The campaign's results table as text chunks (`GET /campaigns/{id}/results`): CSV
        with a header, or JSON lines, one row per record; streamed, so any size fits."""
        if format not in FORMATS:
            raise UsageError(f"format must be csv or jsonl, not {format!r}")
        params: dict[str, Any] = {"format": format, "where": check_where(where)}
        if state is not None:
            params["state"] = wire.RecordState(state).value
        try:
            with self._http.stream(
                "GET", f"/campaigns/{campaign_id}/results", params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for(response)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self.server}: {exc}") from exc

    def ended(
        self: FarmhandClient, campaign_id: int, *, cursor: str | None = None, limit: int = 500
    ) -> wire.Ended:
        """Records of the campaign that ended since `cursor` (None: since the start), with
        the cursor to pass next time (`GET /campaigns/{id}/ended`)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return self._model(wire.Ended, "GET", f"/campaigns/{campaign_id}/ended", params=params)

    def failures(
        self: FarmhandClient,
        campaign_id: int,
        *,
        signature: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> wire.FailureGroups:
        """The campaign's failed records grouped by cause, biggest group first
        (`GET /campaigns/{id}/failures`); with `signature` only that group, its records
        paged by `after` (a page's `next`) and `limit`."""
        query = {"signature": signature, "after": after, "limit": limit}
        params = {k: v for k, v in query.items() if v is not None}
        return self._model(
            wire.FailureGroups, "GET", f"/campaigns/{campaign_id}/failures", params=params
        )
