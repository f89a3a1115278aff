"""The offline outbox: the final report of every run (complete, fail, orphan, release) is
written to a durable spool first, then delivered in order by a background thread that
retries with jittered exponential backoff while the server cannot be reached.

Reports are files (`spool.py`: written to a temporary file, fsynced and renamed into place,
so a crash leaves the whole file or none); reports put at the same time by several attempt
threads share one file and one fsync (group commit). An entry is deleted only once
the server applied it (2xx, or the same report replayed) or refused it for good: a 409 means
the lease was lost meanwhile and the server has already re-queued the record, so the report
is logged and dropped; any other refusal moves the entry to `rejected/` for inspection.
Authentication errors and 5xx keep it for a later try.

Every entry carries its run id and lease token, which is all a report needs: an agent
started on the same work directory delivers what an earlier process left.

A complete or fail report may bring its run's output archive: `archives/<run_id>.tar.gz`,
uploaded (under the run's lease) just before the report is delivered — small archives whose
reports go together in one request (`files/archive_uploads.py`) — and deleted once the report
is settled. An archive the server refuses for good
(too big, say) is logged and the report goes without it. An entry may also name its run
directory, removed once the server has applied the report with its archive attached.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from farmhand import wire
from farmhand.client import ApiError, FarmhandClient, FarmhandError
from farmhand.client.retry import Backoff, is_transient
from farmhand.runtime.files import archive_uploads, spool
from farmhand.runtime.files.group_commit import GroupWriter
from farmhand.runtime.files.rundirs import remove_run_dir
from farmhand.runtime.files.spool import VERBS, Entry

__all__ = ["Entry", "Outbox"]

log = logging.getLogger("farmhand.agent")

#: Reports sent in one request when a backlog is delivered (the server takes up to 1,024)...
BATCH = 64
#: ...and about this many bytes of them, well under the server's body limit (64 MiB).
BATCH_BYTES = 8 * 1024 * 1024
#: Seconds the oldest pending report waits for others to go in the same request: at a few
#: hundred short records a second, ten or so per request instead of two to five.
LINGER = 0.02
#: Seconds one delivery request may take before it counts as failed and is retried.
REQUEST_TIMEOUT = 60.0
_KEEP_ON = (401, 403)  # the token may be fixed; these reports are not wrong


#: Called once per entry: (entry, ack, None) when applied, (entry, None, why) when refused.
Done = Callable[[Entry, "wire.RunAck | None", "str | None"], None]


class Outbox:
    """A durable, ordered queue of run reports and the thread that delivers them."""

    def __init__(
        self,
        directory: Path,
        client: FarmhandClient,
        on_done: Done | None = None,
        *,
        max_pause: float = 30.0,
    ):
        self.directory = Path(directory)
        self.client = client
        self.on_done = on_done
        self.backoff = Backoff(0.5, max_pause)
        self.last_error: str | None = None  #: why the last delivery failed; None after one worked
        self.delivered = 0  #: entries the server applied
        self._cond = threading.Condition()
        self._wake = threading.Event()  # a new entry
        self._retry_now = threading.Event()  # end a backoff pause early
        self._stopped = threading.Event()
        self._entries: list[Entry] = []
        self._seq = 0
        self._files: dict[Path, int] = {}  # spool file -> its entries not yet settled
        self._writer = GroupWriter(self.directory, self._written)  # group commit
        self.inherited = 0  #: entries an earlier process left
        self._thread = threading.Thread(target=self._run, name="farmhand-outbox", daemon=True)

    @property
    def archives(self) -> Path:
        """Where output archives wait for their reports."""
        return self.directory / spool.ARCHIVES

    def open(self) -> None:
        """Create the directory and take over what an earlier process left in it."""
        self.archives.mkdir(parents=True, exist_ok=True)
        entries, unreadable, last_seq = spool.load(self.directory)
        for path, why in unreadable:
            self._set_aside(path, f"outbox entry {path.name} cannot be read: {why}")
        with self._cond:  # new entries sort after every old one, readable or not
            self._seq = max(self._seq, last_seq)
        spool.remove_stray_archives(self.archives, {e.archive_file for e in entries})
        with self._cond:
            self._entries = sorted([*entries, *self._entries])
            for entry in entries:
                if entry.path is not None:
                    self._files[entry.path] = self._files.get(entry.path, 0) + 1
        self.inherited = len(entries)

    # --- the queue -----------------------------------------------------------------------

    def put(
        self,
        run_id: int,
        verb: str,
        body: BaseModel,
        label: str,
        *,
        archive_file: Path | None = None,
        archive_data: bytes | None = None,
        remove_after: Path | None = None,
    ) -> Entry:
        """Spool a report durably (fsynced before this returns) and wake the delivery thread.

        Reports put by several threads at once are written together with one fsync (group
        commit): the first writes, the others wait and go in the next write, all of them.
        `archive_file` (in `archives`, its sha256 in the body's `archive`), or a small
        archive's bytes `archive_data` (spooled with the report), is uploaded before the
        report; `remove_after` is removed once the report is applied with an archive.
        When the spool cannot be written (disk full, read-only), the report is kept in
        memory and still delivered; only a crash before that would lose it.
        """
        if verb not in VERBS:
            raise ValueError(f"unknown report {verb!r}; expected one of {', '.join(VERBS)}")
        with self._cond:
            self._seq += 1
            entry = Entry(self._seq, run_id, verb, body.model_dump(mode="json"), label)
        entry.archive_file, entry.remove_after = archive_file, remove_after
        entry.archive_data = archive_data
        entry.queued_at = time.monotonic()
        self._writer.write(entry)  # sets entry.size, the bytes of its document
        with self._cond:
            bisect.insort(self._entries, entry)
        self._wake.set()
        return entry

    def _written(self, path: Path, group: list[Entry]) -> None:
        with self._cond:
            self._files[path] = len(group)
        for entry in group:
            entry.path = path

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    def only_releases(self) -> bool:
        """Whether every entry still waiting is a release (deregistering does the same)."""
        with self._cond:
            return all(e.verb == "release" for e in self._entries)

    def pending_run_ids(self) -> list[int]:
        """Runs whose reports wait here: their leases must still be renewed."""
        with self._cond:
            return [e.run_id for e in self._entries if not e.inherited]

    def flush(self, timeout: float, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Wait until every entry is delivered (True), `timeout` passes or `interrupted()`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._entries:
                left = deadline - time.monotonic()
                if left <= 0 or interrupted():
                    return False
                self._cond.wait(min(left, 0.2))  # also look at interrupted() now and then
            return True

    def deliver_all(self, timeout: float, interrupted: Callable[[], bool]) -> bool:
        """Before the agent exits: wait up to `timeout` for every report to be delivered, and
        say where the rest stays if they cannot be; True if all were."""
        waiting = len(self)
        if not waiting:
            return True
        log.info("waiting up to %.0fs for %d report(s) to be sent", timeout, waiting)
        if self.flush(timeout, interrupted):
            return True
        log.warning(
            "%d report(s) could not be delivered; they stay in %s, and an agent started with "
            "this outbox delivers them (while their leases last)",
            len(self),
            self.directory,
        )
        return False

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Start delivering in the background."""
        self._thread.start()

    def nudge(self) -> None:
        """Retry now instead of after the current backoff pause (the server is back)."""
        self._retry_now.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the request in flight (if any); entries left stay on disk."""
        self._stopped.set()
        self._wake.set()
        self._retry_now.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _linger(self) -> None:
        """Let reports that end close together share a request: wait until the oldest
        pending one is `LINGER` old, unless a batch is full already."""
        with self._cond:
            if not self._entries or len(self._entries) >= BATCH:
                return
            left = self._entries[0].queued_at + LINGER - time.monotonic()
        if left > 0:
            self._stopped.wait(left)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._linger()
                sent = self.deliver_some()
            except FarmhandError as exc:
                self.last_error = str(exc)
                pause = self.backoff.next()
                log.warning(
                    "outbox: %d report(s) wait; retrying in %.1fs: %s", len(self), pause, exc
                )
                self._retry_now.wait(pause)
                self._retry_now.clear()
                continue
            except Exception:  # a bug must not end delivery for good
                log.exception("outbox: delivery failed unexpectedly")
                self._stopped.wait(self.backoff.next())
                continue
            if not sent:
                self._wake.wait(1.0)
                self._wake.clear()

    def deliver_some(self) -> int:
        """Deliver the oldest pending reports (one request); how many were settled.

        Raises `FarmhandError` (the entries stay) when the server cannot take them now.
        """
        with self._cond:
            batch, size = [], 0
            for entry in self._entries[:BATCH]:
                if batch and size + entry.size > BATCH_BYTES:
                    break  # big result documents: fewer per request
                batch.append(entry)
                size += entry.size
        if not batch:
            return 0
        settled = self._deliver(batch)
        self.backoff.reset()
        self.last_error = None
        return settled

    def _deliver(self, entries: list[Entry]) -> int:
        """One request for `entries`, every verb alike (`POST /runs/reports`); when the
        request as a whole is refused, each entry goes alone to find the one at fault."""
        archive_uploads.upload(self.client, entries, self._without_archive, timeout=REQUEST_TIMEOUT)
        try:
            items = [wire.RunReport(run_id=e.run_id, verb=e.verb, **e.body) for e in entries]
            answers = self.client.report_many(items, timeout=REQUEST_TIMEOUT)
        except ValidationError as exc:
            if len(entries) > 1:
                return self._one_by_one(entries)
            self._reject(entries[0], f"unreadable report: {exc.errors()[0]['msg']}")
            return 1
        except ApiError as exc:
            if is_transient(exc) or exc.status in _KEEP_ON:
                raise
            if len(entries) > 1:
                return self._one_by_one(entries)  # e.g. one report the server cannot accept
            self._reject(entries[0], str(exc))
            return 1
        for entry, answer in zip(entries, answers, strict=True):
            if answer.ack is not None:
                self._settle(entry, answer.ack, None)
            elif answer.error is not None and answer.error.code in (
                wire.ErrorCode.stale_lease,
                wire.ErrorCode.conflict,
            ):
                self._settle(entry, None, answer.error.detail)
            else:
                detail = answer.error.detail if answer.error else "no answer for it"
                self._reject(entry, detail)
        return len(entries)

    def _one_by_one(self, entries: list[Entry]) -> int:
        return sum(self._deliver([entry]) for entry in entries)

    def _without_archive(self, entry: Entry, why: str) -> None:
        log.warning(
            "the archive of %s cannot be uploaded: %s; the report goes without it and the run "
            "directory%s stays",
            entry.label,
            why,
            "" if entry.remove_after is None else f" {entry.remove_after}",
        )
        entry.body["archive"] = None
        entry.remove_after = None

    # --- settling ------------------------------------------------------------------------

    def _settle(self, entry: Entry, ack: wire.RunAck | None, problem: str | None) -> None:
        """The server decided: forget the entry and tell the owner."""
        if problem is not None and entry.verb != "release":
            log.warning(
                "the report of %s came too late: %s; the server re-queued the record",
                entry.label,
                problem,
            )
        if self._last_of_its_file(entry):
            # Missing: another agent on this directory delivered it too (harmless).
            entry.path.unlink(missing_ok=True)
        self._forget(entry, ack, problem)

    def _reject(self, entry: Entry, reason: str) -> None:
        """The server refused the entry as wrong: keep it aside for a person to read (from
        a group file, a file of its own: the others in it are not wrong)."""
        path, last = entry.path, self._last_of_its_file(entry)
        if path is not None and path.name != spool.entry_name(entry):
            alone = self.directory / spool.entry_name(entry)
            try:
                alone.write_text(spool.document(entry))
            except OSError as exc:
                log.warning("cannot write %s: %s", alone, exc.strerror or exc)
            if last:
                path.unlink(missing_ok=True)
            path = alone if alone.exists() else None
        self._set_aside(path, f"the server refused the report of {entry.label}: {reason}")
        self._forget(entry, None, reason)

    def _last_of_its_file(self, entry: Entry) -> bool:
        """Settle `entry` in its spool file; True when it was the file's last one (remove
        the file). A crash before that leaves the file, and the reports already settled in
        it are sent again: the server answers a repeat as before."""
        if entry.path is None:
            return False
        with self._cond:
            left = self._files.get(entry.path, 1) - 1
            if left > 0:
                self._files[entry.path] = left
                return False
            self._files.pop(entry.path, None)
            return True

    def _set_aside(self, path: Path | None, why: str) -> None:
        kept = "it was kept in memory only"
        if path is not None:
            rejected = self.directory / "rejected"
            try:
                rejected.mkdir(exist_ok=True)
                os.replace(path, rejected / path.name)
                kept = f"kept in {rejected / path.name}"
            except OSError as exc:
                kept = f"left in {path} ({exc.strerror or exc})"
        log.error("%s; %s", why, kept)

    def _forget(self, entry: Entry, ack: wire.RunAck | None, problem: str | None) -> None:
        if entry.archive_file is not None:
            entry.archive_file.unlink(missing_ok=True)
        if ack is not None and entry.remove_after is not None and entry.body.get("archive"):
            try:
                remove_run_dir(entry.remove_after)
            except OSError as exc:
                log.warning("could not remove %s: %s", entry.remove_after, exc)
        with self._cond:
            self._entries.remove(entry)
            if ack is not None:
                self.delivered += 1
            self._cond.notify_all()
        if self.on_done is not None:
            try:
                self.on_done(entry, ack, problem)
            except Exception:
                log.exception("handling the outcome of %s failed", entry.label)
