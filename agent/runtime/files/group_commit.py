"""Group commit for the outbox's spool: reports that several attempt threads put at once are
written into one file with one fsync. The first thread to find no write in progress writes
every entry waiting, its own included; the others wait for the write that took theirs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from farmhand.runtime.files import spool
from farmhand.runtime.files.spool import Entry

__all__ = ["GroupWriter"]

log = logging.getLogger("farmhand.agent")


class GroupWriter:
    """Makes entries durable in `directory`; `written(path, group)` is told of each file."""

    def __init__(self, directory: Path, written: Callable[[Path, list[Entry]], None]):
        self.directory = directory
        self.written = written
        self._cond = threading.Condition()
        self.unwritten: list[Entry] = []  #: put, waiting for the next write
        self._writing: list[Entry] = []  # in the write in progress

    def write(self, entry: Entry) -> None:
        """Return once `entry` is on disk (or could not be written: logged, kept in memory)."""
        with self._cond:
            self.unwritten.append(entry)
            while True:
                if entry not in self.unwritten and entry not in self._writing:
                    return  # written by another thread's write
                if not self._writing:  # no write in progress: this thread writes
                    group, self.unwritten = sorted(self.unwritten), []
                    self._writing = group
                    break
                self._cond.wait()
        try:
            self._write(group)
        finally:
            with self._cond:
                self._writing = []
                self._cond.notify_all()

    def _write(self, group: list[Entry]) -> None:
        """One file and one fsync for the whole group. The archives the entries name are not
        fsynced (one more journal commit each): after a machine crash the outbox finds an
        archive that did not survive whole (missing, or its bytes not hashing to the name
        in the report), sends the report without it and keeps the run directory."""
        alone = len(group) == 1
        path = self.directory / (spool.entry_name(group[0]) if alone else spool.group_name(group))
        documents = [spool.document(entry) for entry in group]
        for entry, document in zip(group, documents, strict=True):
            entry.size = len(document)  # what a delivery batch counts
        text = documents[0] if alone else spool.join_group(documents)
        try:
            spool.write_durably(path, text)
        except OSError as exc:
            for entry in group:
                log.error(
                    "cannot write %s (%s): the report of %s is kept in memory only",
                    path,
                    exc.strerror or exc,
                    entry.label,
                )
            return
        self.written(path, group)
