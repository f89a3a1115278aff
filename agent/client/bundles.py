"""Bundle and backup calls for `FarmhandClient`: export pages, import chunks, the backup
stream."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from farmhand import wire
from farmhand.client.errors import ServerUnavailable, raise_for

if TYPE_CHECKING:
    from farmhand.client.api import FarmhandClient

__all__ = ["BundleCalls"]

CHUNK = 1024 * 1024


class BundleCalls:
    """The bundle half of `FarmhandClient` (mixed into it)."""

    def bundle_page(
        self: FarmhandClient, campaign_id: int, *, after: int | None = None, limit: int = 200
    ) -> wire.BundlePage:
        """One page of a campaign's export (records with runs, results, inputs, parents)."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return self._model(wire.BundlePage, "GET", f"/bundles/{campaign_id}", params=params)

    def bundle_pages(self: FarmhandClient, campaign_id: int) -> Iterator[wire.BundlePage]:
        """Every page of a campaign's export, in record id order."""
        after: int | None = None
        while True:
            page = self.bundle_page(campaign_id, after=after)
            yield page
            if page.next is None:
                return
            after = page.next

    def import_bundle(
        self: FarmhandClient, campaign: wire.BundleCampaign, records: list[wire.BundleRecord]
    ) -> wire.BundleImported:
        """Merge one chunk of records (parents first) into campaign `name`:`version`."""
        body = wire.BundleImport(campaign=campaign, records=records)
        return self._model(
            wire.BundleImported, "POST", "/bundles", json=self._body(body), timeout=300.0
        )

    def backup(self: FarmhandClient, dest: Path) -> int:
        """Stream the server's backup tar (admin) into `dest` (a temporary file beside it,
        renamed into place when whole). Returns its size in bytes."""

        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with self._http.stream("GET", "/backup", timeout=None) as response:
                        if not response.is_success:
                            response.read()
                            raise_for(response)
                        for chunk in response.iter_bytes(CHUNK):
                            out.write(chunk)
                            size += len(chunk)
                except httpx.TransportError as exc:
                    raise ServerUnavailable(f"cannot reach {self.server}: {exc}") from exc
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size
