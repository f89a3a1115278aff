"""Filters over record params (`?where=T>=600`), as SQL both databases evaluate alike.

A condition matches a record whose param has the condition's type (`wire.Condition.kind`)
and compares true; a param of another type, or no such param, never matches. The type is
tested before the value is read (a CASE, not an AND: PostgreSQL may evaluate an AND's sides
in any order, and `'fcc'::numeric` is an error). A name no record of the campaign uses is
refused: a typo must not read as "no filter" nor as "nothing matches".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    String,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
    update,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from farmhand import wire
from farmhand.server.errors import Invalid
from farmhand.server.tables import CAMPAIGN, REC, Campaign

__all__ = ["check_names", "note_names", "parse", "where_clause"]

#: Distinct param names in one campaign (the columns of its results table).
MAX_CAMPAIGN_PARAMS = 1024

#: The JSON type names each dialect reports (`json_type` / `jsonb_typeof`) per filter kind.
_TYPES = {
    "sqlite": {"number": ("integer", "real"), "boolean": ("true", "false"), "string": ("text",)},
    "postgresql": {"number": ("number",), "boolean": ("boolean",), "string": ("string",)},
}
_COMPARE = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def parse(texts: Sequence[str]) -> list[wire.Condition]:
    """`wire.parse_where` for each text; a 422 naming the first that is not a filter."""
    try:
        return [wire.parse_where(text) for text in texts]
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def check_names(
    session: Session, conditions: Sequence[wire.Condition], campaign_id: int | None
) -> None:
    """Refuse a condition naming a param that no record of the campaign (or, without one,
    of any campaign) uses, listing the names there are."""
    if not conditions:
        return
    stmt = select(CAMPAIGN.c.params)
    if campaign_id is not None:
        stmt = stmt.where(CAMPAIGN.c.id == campaign_id)
    known = {name for names in session.execute(stmt).scalars() for name in names}
    for condition in conditions:
        if condition.name not in known:
            where = f"campaign {campaign_id}" if campaign_id is not None else "any campaign"
            has = ", ".join(sorted(known)[:50]) or "none"
            raise Invalid(
                f"filter {condition}: no record of {where} has a param {condition.name!r} "
                f"(params: {has})"
            )


def note_names(session: Session, campaign: Campaign, params: Iterable[dict[str, Any]]) -> None:
    """Add the names these records' params use to the campaign's (the results table's
    columns; what a filter may name). Names are never taken away: a forced submission that
    drops one leaves a column that is empty for some rows."""
    names = set(campaign.params)
    for each in params:
        names.update(each)
    if len(names) == len(campaign.params):
        return
    # New names are rare: lock the row, so two submissions do not drop each other's. FOR NO
    # KEY UPDATE, as every campaign lock (queue/lifecycle.py): record inserts, whose foreign
    # key takes FOR KEY SHARE, do not wait for it. Callers take it after their record locks.
    locked = (
        select(CAMPAIGN.c.params)
        .where(CAMPAIGN.c.id == campaign.id)
        .with_for_update(key_share=True)
    )
    names.update(session.execute(locked).scalar_one())
    if len(names) > MAX_CAMPAIGN_PARAMS:
        raise Invalid(
            f"campaign '{campaign.name}' would use {len(names)} param names; "
            f"the limit is {MAX_CAMPAIGN_PARAMS}"
        )
    session.execute(
        update(CAMPAIGN).where(CAMPAIGN.c.id == campaign.id).values(params=sorted(names))
    )


def where_clause(dialect: str, condition: wire.Condition) -> ColumnElement[bool]:
    """The SQL of one condition on `record.params` for `dialect`."""
    name, kind = condition.name, condition.kind
    if dialect == "postgresql":
        item = REC.c.params.op("->")(literal(name, String))
        type_of = func.jsonb_typeof(item)
        text = REC.c.params.op("->>")(literal(name, String))
        value = {
            "number": lambda: cast(text, Float),
            "boolean": lambda: text == "true",
            "string": lambda: text,
        }[kind]()
    else:
        path = f'$."{name}"'
        type_of = func.json_type(REC.c.params, path)
        extracted = func.json_extract(REC.c.params, path)
        value = {
            "number": lambda: type_coerce(extracted, Float),
            "boolean": lambda: type_coerce(extracted, Boolean) == literal(True),
            "string": lambda: type_coerce(extracted, String),
        }[kind]()
    wanted = condition.value
    if kind == "boolean":
        test = value if (wanted is True) == (condition.op == "=") else ~value
    else:
        test = _COMPARE[condition.op](value, literal(wanted))
    return case((type_of.in_(_TYPES[dialect][kind]), test), else_=False)
