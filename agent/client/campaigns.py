"""The Python API for scripts and notebooks: `farmhand.connect()` and a campaign handle.

    import farmhand
    fh = farmhand.connect()                      # FARMHAND_SERVER / FARMHAND_TOKEN
    c = fh.campaign("eos")                       # get or create; "eos:2" names a version
    c.sweep("./relax --a {a} --T {T}", a=[4.0, 4.05], T=[300, 600], inputs=["Al.eam"])
    for rec in c.as_completed(timeout=3600):     # records as they end
        print(rec.key, rec.params, rec.state, rec.result)
    rows = c.results(state="done", where="T>=600")

Every call goes through `FarmhandClient`; errors are the `FarmhandError` tree
(`farmhand.client.errors`), with `UsageError` for a call that is wrong before anything is
sent. `docs/python.md` has the worked example.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from farmhand import wire
from farmhand.client import sweeps
from farmhand.client.api import FarmhandClient
from farmhand.client.errors import UsageError
from farmhand.client.results import check_where
from farmhand.client.transfer import sha256_file

__all__ = ["Campaign", "Connection", "Results", "connect"]

#: Seconds between polls of `as_completed` and `wait` while nothing changes.
POLL = 1.0
#: `sweep` keyword arguments that are record fields, not lists of param values.
RECORD_FIELDS = ("run_args", "priority", "dataset", "tags", "parents")

Inputs = Sequence[str | Path] | Mapping[str, str | Path] | None


def connect(server: str | None = None, token: str | None = None, **kwargs: Any) -> Connection:
    """A connection to a farmhand server: `server` and `token` or, when not given,
    FARMHAND_SERVER and FARMHAND_TOKEN (or FARMHAND_TOKEN_FILE). `kwargs` go to
    `FarmhandClient` (timeout, transport)."""
    return Connection(FarmhandClient(server, token, **kwargs))


class Connection:
    """What `connect()` returns: campaigns by name, and the typed client underneath."""

    def __init__(self, client: FarmhandClient):
        self.client = client

    def campaign(self, ref: str | int, **settings: Any) -> Campaign:
        """The campaign `ref` names: `NAME` is its newest version, created when there is none
        (with `settings`: software, defaults, based_on); `NAME:VERSION` or an id must exist
        (NotFound otherwise)."""
        client = self.client
        if isinstance(ref, int) or str(ref).isdigit():
            return Campaign(client, client.campaign(int(ref)))
        name, colon, version = str(ref).partition(":")
        if colon and not version.isdigit():
            raise UsageError(f"campaign {ref!r} is not NAME or NAME:VERSION")
        versions = client.campaigns(name=name)
        if colon:
            found = [c for c in versions if c.version == int(version)]
            if not found:
                have = ", ".join(str(c.version) for c in versions) or "none"
                raise UsageError(f"campaign {name} has no version {version} (versions: {have})")
            return Campaign(client, found[0])
        if versions:
            return Campaign(client, max(versions, key=lambda c: c.version))
        return Campaign(client, client.create_campaign(name, **settings))

    def campaigns(self) -> list[Campaign]:
        """Every campaign, oldest first."""
        return [Campaign(self.client, c) for c in self.client.campaigns()]

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Results(list):  # type: ignore[type-arg] - rows: dict[str, Any]
    """The rows of `farmhand results` as dicts (a list), with `to_pandas()`."""

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (pandas is an optional extra: `pip install pandas`)."""
        try:
            import pandas
        except ImportError:
            raise UsageError("to_pandas() needs pandas: pip install pandas") from None
        return pandas.DataFrame(list(self))


class Campaign:
    """One campaign: submit records and sweeps, follow them as they end, read the results."""

    def __init__(self, client: FarmhandClient, campaign: wire.Campaign):
        self.client = client
        self.info = campaign
        self.id = campaign.id
        self.name = f"{campaign.name}:{campaign.version}"
        self._uploaded: dict[Path, str] = {}  # local file -> sha256, uploaded once

    def __repr__(self) -> str:
        return f"<Campaign {self.name} (id {self.id})>"

    def refresh(self) -> wire.Campaign:
        """The campaign as the server has it now (counts by state)."""
        self.info = self.client.campaign(self.id)
        return self.info

    # --- in ------------------------------------------------------------------------------

    def submit(
        self,
        records: Iterable[wire.RecordSpec],
        *,
        inputs: Inputs = None,
        force: bool = False,
        force_ignores_success: bool = False,
    ) -> wire.RecordsCreated:
        """Submit records (existing keys are skipped unless `force`). `inputs` — local files
        (placed in the run directory under their names) or {path in the run directory:
        local file} — are hashed, uploaded once and given to every record."""
        staged = self._stage(inputs)
        specs = [
            spec.model_copy(update={"inputs": {**spec.inputs, **staged}}) if staged else spec
            for spec in records
        ]
        if not specs:
            raise UsageError("no records to submit")
        return self.client.submit(
            self.id, specs, force=force, force_ignores_success=force_ignores_success
        )

    def sweep(
        self,
        command: str,
        *,
        key: str | None = None,
        zip: bool = False,
        inputs: Inputs = None,
        force: bool = False,
        **lists: Any,
    ) -> wire.RecordsCreated:
        """One record per combination of the param lists (`a=[4.0, 4.05], T=[300, 600]`: the
        product; `zip=True` pairs them): `command` and `key` are templates over the params
        (`{a}`; default key `T=300,a=4.0`). `run_args`, `priority`, `dataset`, `tags` and
        `parents` are record fields, not params."""
        fields = {name: lists.pop(name) for name in RECORD_FIELDS if name in lists}
        if not lists:
            raise UsageError("a sweep needs at least one param list, e.g. T=[300, 600]")
        try:
            specs = sweeps.sweep_specs(command, lists, key=key, zip_lists=zip, **fields)
        except ValueError as exc:
            raise UsageError(f"sweep {command!r}: {exc}") from None
        return self.submit(specs, inputs=inputs, force=force)

    def _stage(self, inputs: Inputs) -> dict[str, str]:
        """{path in the run directory: sha256} for `inputs`, each file uploaded once."""
        if not inputs:
            return {}
        if isinstance(inputs, Mapping):
            named = {str(path): Path(local) for path, local in inputs.items()}
        else:
            named = {Path(local).name: Path(local) for local in inputs}
        staged = {}
        for path, local in named.items():
            resolved = local.resolve()
            if resolved not in self._uploaded:
                try:
                    sha = sha256_file(resolved)
                except OSError as exc:
                    raise UsageError(f"cannot read input {local}: {exc.strerror or exc}") from None
                if not self.client.has_snapshot(sha):
                    self.client.upload_snapshot(resolved, sha256=sha, skip_if_present=False)
                self._uploaded[resolved] = sha
            staged[path] = self._uploaded[resolved]
        try:
            return wire.check_inputs(staged)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    # --- following -----------------------------------------------------------------------

    def as_completed(
        self, timeout: float | None = None, *, poll: float = POLL
    ) -> Iterator[wire.Record]:
        """Each record of the campaign as it ends (done, failed, cancelled, orphaned) —
        those that ended before the call first — until none is waiting, ready or running.
        A record retried and ended again comes again. TimeoutError after `timeout` seconds.
        Each poll reads only what ended since the last one (`GET /campaigns/{id}/ended`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = None
        while True:
            page = self.client.ended(self.id, cursor=cursor)
            cursor = page.cursor
            yield from page.items
            if page.more:
                continue
            if page.finished:
                return
            _pause(deadline, poll, f"records of {self.name} have not ended yet")

    def wait(self, timeout: float | None = None, *, poll: float = POLL) -> dict[str, int]:
        """Block until no record is waiting, ready, claimed or running; the counts by state
        then. TimeoutError after `timeout` seconds. Polls what ended since the last look, as
        `as_completed` does, never the whole campaign; only the final counts read it."""
        for _ in self.as_completed(timeout, poll=poll):
            pass
        return {str(k.value): v for k, v in self.refresh().counts.items() if v}

    # --- out -----------------------------------------------------------------------------

    def results(
        self, *, state: str | None = None, where: str | Sequence[str] | None = None
    ) -> Results:
        """The rows of `farmhand results` as dicts: key, state, each param, each result field
        (nested ones joined with dots), attempts, runtime_s, error."""
        rows = Results()
        pending = ""
        for chunk in self.client.results_stream(self.id, format="jsonl", state=state, where=where):
            lines = (pending + chunk).split("\n")
            pending = lines.pop()
            rows.extend(json.loads(line) for line in lines if line)
        if pending.strip():
            rows.append(json.loads(pending))
        return rows

    def records(
        self, *, state: str | None = None, where: str | Sequence[str] | None = None
    ) -> Iterator[wire.Record]:
        """The campaign's records (with params and results), filtered, page after page."""
        yield from self.client.records(
            campaign_id=self.id,
            state=None if state is None else wire.RecordState(state),
            where=check_where(where) or None,
        )

    # --- steering ------------------------------------------------------------------------

    def retry(
        self,
        *,
        state: str = "failed",
        where: str | Sequence[str] | None = None,
        key_prefix: str | None = None,
        tag: str | None = None,
        **flags: Any,
    ) -> wire.RecordsChanged:
        """Re-queue the records in `state` (failed by default) matching `where` (and whose key
        starts with `key_prefix`, tagged `tag`), with fresh attempts; `flags`: force,
        force_ignores_success, run_args (as `FarmhandClient.retry`)."""
        chosen = self._filter(state, where, key_prefix, tag)
        return self.client.act_by_filter(self.client.retry, chosen, **flags)

    def cancel(
        self,
        *,
        state: str | None = None,
        where: str | Sequence[str] | None = None,
        key_prefix: str | None = None,
        tag: str | None = None,
    ) -> wire.RecordsChanged:
        """Cancel the records matching `state`, `where`, `key_prefix` and `tag` that have not
        ended (done and failed ones are skipped, with the reason)."""
        chosen = self._filter(state, where, key_prefix, tag)
        return self.client.act_by_filter(self.client.cancel, chosen)

    def count(
        self,
        *,
        state: str | None = None,
        where: str | Sequence[str] | None = None,
        key_prefix: str | None = None,
        tag: str | None = None,
    ) -> wire.RecordCount:
        """How many records these filters match, by state (what `cancel` or `retry` with
        them would look at)."""
        return self.client.count_records(self._filter(state, where, key_prefix, tag))

    def _filter(
        self,
        state: str | None,
        where: str | Sequence[str] | None,
        key_prefix: str | None = None,
        tag: str | None = None,
    ) -> wire.RecordFilter:
        return wire.RecordFilter(
            campaign_id=self.id,
            state=None if state is None else wire.RecordState(state),
            key_prefix=key_prefix,
            tag=tag,
            where=check_where(where),
        )


def _pause(deadline: float | None, poll: float, why: str) -> None:
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out: {why}")
        poll = min(poll, left)
    time.sleep(poll)
