"""What each final report does: the verb table (`ENDINGS`) and the report as the server
applies and remembers it (`Report`, whose digest makes a repeat recognisable)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from farmhand import wire
from farmhand.server.queue.states import Event


@dataclass(frozen=True)
class Ending:
    """What a report's verb does: the record's event (`retry_event` while attempts remain),
    the run's new state, and whether the attempt counts."""

    event: Event
    retry_event: Event
    run_state: wire.RunState
    spends_attempt: bool


#: The report path's state table: verb → what it does to the run and its record.
ENDINGS: dict[str, Ending] = {
    "complete": Ending(Event.complete, Event.complete, wire.RunState.done, True),
    "fail": Ending(Event.fail, Event.requeue, wire.RunState.failed, True),
    "release": Ending(Event.release, Event.release, wire.RunState.released, False),
    "orphan": Ending(Event.orphan, Event.orphan, wire.RunState.orphaned, False),
}
#: The fields of each verb's report that make a repeat recognisable (its digest), beside
#: the token and, when given, the archive.
_DIGESTED = {
    "complete": ("exit_code", "result", "stdout_tail", "stderr_tail"),
    "fail": ("error", "exit_code", "stdout_tail", "stderr_tail"),
    "release": ("reason",),
    "orphan": ("reason",),
}
RELEASED = "released by agent"


@dataclass
class Report:
    """One final report, whichever endpoint brought it."""

    verb: str
    run_id: int
    token: str
    payload: dict[str, Any]  # the digested fields: a repeat has the same digest
    result: Any = None
    started_at: datetime | None = None  # the command's start, when it came with the report

    @property
    def digest(self) -> str:
        text = json.dumps(self.payload, sort_keys=True, separators=(",", ":"))
        return self.verb + ":" + hashlib.sha256(text.encode()).hexdigest()


def report_of(item: wire.RunReport) -> Report:
    """The report as the server applies and remembers it (its digested payload)."""
    verb = item.kind
    payload = {"token": item.token, **{name: getattr(item, name) for name in _DIGESTED[verb]}}
    if verb == "complete" and item.exit_code is None:
        payload["exit_code"] = 0
    if verb == "release" and item.reason is None:
        payload["reason"] = RELEASED
    if item.archive:  # only when given, so reports without one keep the digests they had
        payload["archive"] = item.archive
    return Report(verb, item.run_id, item.token, payload, item.result, item.started_at)


def as_report(run_id: int, verb: str, body: BaseModel) -> wire.RunReport:
    """A per-run endpoint's body (`RunComplete`, `RunFail`, `RunRelease`, `RunOrphan`, all
    validated already) as the report item the batch endpoint takes."""
    return wire.RunReport.model_construct(run_id=run_id, verb=verb, **dict(body))
