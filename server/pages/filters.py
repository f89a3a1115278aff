"""What the campaign page's filter form chose: read from a query or a form, checked, and
handed on unchanged to the record list, the bulk actions and the CSV download, so each of
them reads exactly the records the page shows (`catalog.walk.conditions` makes the SQL).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError

from farmhand import wire
from farmhand.server.errors import Invalid
from farmhand.server.pages.access import Refused
from farmhand.server.views import browse

NAME = re.compile(wire.NAME_PATTERN)  # datasets and tags
#: Filters on params one page may combine.
MAX_WHERE = 8
#: Result fields one page may show as columns.
MAX_COLUMNS = 12


def chosen(
    *,
    state: str = "",
    key: str = "",
    dataset: str = "",
    tag: str = "",
    where: Sequence[str] = (),
) -> browse.Filters:
    """The page's filters from its query or form fields (blank: no filter); 422 (as the
    error page) for a value no record could match or a params filter that is not one."""
    try:
        wanted = wire.RecordState(state) if state else None
    except ValueError:
        choices = ", ".join(s.value for s in wire.RecordState)
        raise Refused(f"unknown state {state!r}; choose one of {choices}", 422) from None
    key, dataset, tag = key.strip(), dataset.strip(), tag.strip()
    for name, value in (("dataset", dataset), ("tag", tag)):
        if value and not (len(value) <= 200 and NAME.match(value)):
            problem = "a letter or digit, then letters, digits or ._- (at most 200)"
            raise Refused(f"{name} {value!r} is not a name: {problem}", 422)
    if len(key) > wire.MAX_KEY_LENGTH or "\x00" in key:
        raise Refused(f"a key prefix has at most {wire.MAX_KEY_LENGTH} characters, no NUL", 422)
    texts = [text.strip() for text in where if text.strip()]
    if len(texts) > MAX_WHERE:
        raise Refused(f"at most {MAX_WHERE} filters on params at once", 422)
    found = browse.Filters(wanted, key or None, dataset or None, tag or None, texts)
    try:
        found.conditions()
    except Invalid as exc:
        raise Refused(exc.message, 422) from None
    as_filter(found, 0)  # what the API would refuse, refused here too
    return found


def as_filter(found: browse.Filters, campaign_id: int) -> wire.RecordFilter:
    """The filters as the API's bulk actions take them; 422 for what the API refuses."""
    try:
        return found.as_filter(campaign_id)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise Refused(f"not a filter: {problems}", 422) from None


def query(found: browse.Filters) -> list[tuple[str, str]]:
    """The filters as query pairs (for links and hidden form fields), blanks left out."""
    pairs = [
        ("state", found.state.value if found.state else ""),
        ("dataset", found.dataset or ""),
        ("tag", found.tag or ""),
        ("key", found.key_prefix or ""),
    ]
    pairs += [("where", text) for text in found.where]
    return [(name, value) for name, value in pairs if value]


def described(found: browse.Filters) -> list[str]:
    """The filters in words, for the confirmation of an action: `state is failed`, …"""
    out = []
    if found.state:
        out.append(f"state is {found.state.value}")
    if found.dataset:
        out.append(f"dataset is {found.dataset}")
    if found.tag:
        out.append(f"tagged {found.tag}")
    if found.key_prefix:
        out.append(f"key starts with {found.key_prefix}")
    out += list(found.where)
    return out


def columns(names: Sequence[str]) -> list[str]:
    """The result fields a page adds as columns (`?columns=energy`), in the order asked,
    each once; 422 past `MAX_COLUMNS` or for a name no result could have."""
    out = list(dict.fromkeys(name.strip() for name in names if name.strip()))
    if len(out) > MAX_COLUMNS:
        raise Refused(f"at most {MAX_COLUMNS} result columns at once", 422)
    for name in out:
        if len(name) > 200 or "\x00" in name:
            raise Refused("a result column names a field: at most 200 characters, no NUL", 422)
    return out
