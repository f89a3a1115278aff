"""Cancel or retry what the campaign page's filter shows, in two steps that need no script:
the page's form posts the filter here, which answers with a confirmation naming how many
records match (counted by the server for exactly that filter, by state: what will change and
what will be skipped, and why) and a hidden copy of the filter; confirming posts it back and
the action applies that filter, page after page (`walk.BULK_PAGE` records a transaction, at
most `MAX_PAGES` of them), to records no newer than the count saw (`through`), then says how
many changed and how many were skipped with the reasons.

Both steps are POSTs from our own pages: same origin, the session's CSRF token, and a role
that may act (`access.ActorDep`: submitters and admins; agent tokens never).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from farmhand import wire
from farmhand.server.catalog import campaigns, records, walk
from farmhand.server.pages import filters
from farmhand.server.pages.access import ActorDep, Refused
from farmhand.server.pages.render import render
from farmhand.server.pages.routes import DID_LENGTH, page_errors
from farmhand.server.queue import states
from farmhand.server.queue.states import Event
from farmhand.server.routes.deps import DbDep
from farmhand.server.tables import utcnow
from farmhand.server.views import browse

router = APIRouter(include_in_schema=False)
#: Transactions one confirmation runs (`walk.BULK_PAGE` records each); past them, it says
#: how far it went and the user confirms again for the rest.
MAX_PAGES = 10
Action = Literal["cancel", "retry"]
VERBS = {"cancel": "Cancel", "retry": "Retry"}
WHY_SKIPPED = {
    "cancel": "they have ended: nothing to cancel",
    "retry": "only failed, cancelled and orphaned records are retried",
}

FormText = Annotated[str, Form()]
FormList = Annotated[list[str], Form()]


def filter_form(
    state: FormText = "",
    key: FormText = "",
    dataset: FormText = "",
    tag: FormText = "",
    where: FormList = [],  # noqa: B006 (FastAPI copies it)
) -> browse.Filters:
    """The filter both steps post: the campaign page's fields, checked as the page checks
    them (422 as the error page)."""
    return filters.chosen(state=state, key=key, dataset=dataset, tag=tag, where=where)


FilterForm = Annotated[browse.Filters, Depends(filter_form)]


def acts_on(action: Action, state: wire.RecordState) -> bool:
    """Whether the action changes a record in `state` (the page never forces a retry)."""
    if action == "cancel":
        return state in states.sources(Event.cancel)
    return records.retry_decision(state, force=False, force_ignores_success=False) is None


@router.post("/campaigns/{campaign_id}/bulk")
def ask(
    request: Request,
    campaign_id: int,
    who: ActorDep,
    db: DbDep,
    chosen: FilterForm,
    action: FormText = "",
) -> Response:
    """The confirmation: how many records the filter shows, what changes and what not."""
    action = checked(action)
    asked = filters.as_filter(chosen, campaign_id)
    with db.read() as session, page_errors():
        row = campaigns.check_exists(session, campaign_id)
        counted = walk.count(session, asked)
    order = list(wire.RecordState)
    by_state = sorted(counted.states.items(), key=lambda item: order.index(item[0]))
    changes = [(s.value, n) for s, n in by_state if acts_on(action, s)]
    context = {
        "campaign": row,
        "action": action,
        "verb": VERBS[action],
        "count": counted,
        "changes": changes,
        "changing": sum(n for _, n in changes),
        "stops_runs": action == "cancel" and any(s in ("claimed", "running") for s, _ in changes),
        "skips": [(s.value, n) for s, n in by_state if not acts_on(action, s)],
        "why_skipped": WHY_SKIPPED[action],
        "described": filters.described(chosen),
        "query": filters.query(chosen),
        "limit": MAX_PAGES * walk.BULK_PAGE,
        "back": f"/campaigns/{campaign_id}?{urlencode(filters.query(chosen))}",
        "refresh": "",  # a POST's answer: the page's script must not re-fetch it
    }
    return render(request, "bulk.html", context, viewer=who)


@router.post("/campaigns/{campaign_id}/bulk/confirm")
def confirm(
    request: Request,
    campaign_id: int,
    who: ActorDep,
    db: DbDep,
    chosen: FilterForm,
    action: FormText = "",
    through: FormText = "",
    expected: FormText = "",
) -> Response:
    """Apply the action to the filter, as confirmed, and go back to the page saying what
    it did."""
    action = checked(action)
    upto, counted = _number(through), _number(expected)
    asked = filters.as_filter(chosen, campaign_id)
    with db.read() as session, page_errors():
        campaigns.check_exists(session, campaign_id)
    changed, reopened, skipped = 0, 0, Counter[str]()
    after: int | None = None
    for _ in range(MAX_PAGES):
        page = asked.model_copy(update={"after": after})
        with page_errors(), db.write() as session:
            if action == "cancel":
                answer = records.cancel_matching(session, chosen=page, now=utcnow(), through=upto)
            else:
                body = wire.RecordsRetry(filter=page)
                answer = records.retry(session, body=body, now=utcnow(), through=upto)
        if action == "retry" and answer.changed:
            request.app.state.wakeup.notify(len(answer.changed))  # a waiting claim each
        changed += len(answer.changed)
        reopened += answer.reopened
        skipped.update(s.reason for s in answer.skipped)
        after = answer.next
        if after is None:
            break
    said = report(action, changed, reopened, skipped, expected=counted, stopped_after=after)
    query = [*filters.query(chosen), ("did", said[:DID_LENGTH])]
    return RedirectResponse(f"/campaigns/{campaign_id}?{urlencode(query)}", status_code=303)


def report(
    action: Action,
    changed: int,
    reopened: int,
    skipped: Counter[str],
    *,
    expected: int,
    stopped_after: int | None,
) -> str:
    """What an action did, in one line: changed, skipped with the reasons, and any way it
    differs from what the confirmation said."""
    done = "Cancelled" if action == "cancel" else "Re-queued"
    parts = [f"{done} {changed:,} record{'s' if changed != 1 else ''}."]
    if reopened:
        parts.append(f"{reopened:,} waiting descendants were reopened.")
    total = sum(skipped.values())
    if total:
        reasons = "; ".join(f"{n:,} {_agree(reason, n)}" for reason, n in skipped.most_common())
        parts.append(f"Skipped: {reasons}.")
    if stopped_after is not None:
        parts.append(f"Stopped after record {stopped_after}: act again for the rest.")
    elif changed + total != expected:
        parts.append(f"The filter matched {changed + total:,} by then ({expected:,} when asked).")
    return " ".join(parts)


def checked(action: str) -> Action:
    """The action a form names, or 422."""
    if action not in VERBS:
        raise Refused(f"unknown action {action!r}: cancel or retry", 422)
    return action  # type: ignore[return-value]  # checked just above


def _number(text: str) -> int:
    """A count or id the confirmation carries (an id beyond the ids is the last one)."""
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise Refused("the confirmation lost its count; ask again from the campaign page", 422)
    return min(int(text), wire.MAX_ID)


def _agree(reason: str, n: int) -> str:
    """`is done: …` after a count: `2 are done: …`."""
    return "are " + reason[3:] if n != 1 and reason.startswith("is ") else reason
