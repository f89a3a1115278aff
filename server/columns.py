"""Column types and field helpers for `tables.py`: UTC timestamps that stay timezone-aware,
ids SQLite never reuses, JSON documents (JSONB where PostgreSQL reads keys)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, TypeDecorator, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

__all__ = [
    "IDS_NEVER_REUSED",
    "UTCDateTime",
    "json_field",
    "json_list_field",
    "json_or_null_field",
    "params_field",
    "utcnow",
    "when_field",
]


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the server reads."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A datetime stored as UTC and always read back timezone-aware (SQLite forgets zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)

    @staticmethod
    def binder(dialect: str) -> Callable[[datetime | None], Any]:
        """What the driver gets for a datetime on `dialect`, in one step: the same value as
        `process_bind_param` and then the dialect's DateTime make (SQLite stores the text
        `YYYY-MM-DD HH:MM:SS.ffffff`, PostgreSQL a naive UTC timestamp). For the statements
        run on the driver's cursor (`farmhand.server.prepared`); a test holds the two equal."""
        return _to_text if dialect == "sqlite" else _to_naive

    @staticmethod
    def loader(dialect: str) -> Callable[[Any], datetime | None]:
        """A stored datetime as the driver returns it on `dialect`, read back the way
        `process_result_value` after the dialect's DateTime reads it (`binder`'s inverse)."""
        return _from_text if dialect == "sqlite" else _from_naive


def _to_naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # naive means UTC, as in process_bind_param
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def _to_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _from_naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _from_text(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


#: SQLite: ids come from `sqlite_sequence` and are never reused, like PostgreSQL's sequences
#: (a plain INTEGER PRIMARY KEY hands out max(id) + 1). Migration 0008 says why.
IDS_NEVER_REUSED = {"sqlite_autoincrement": True}


def when_field(*, now: bool = False, index: bool = False) -> Any:
    if now:
        return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)
    return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)


def json_field(**kwargs: Any) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False, **kwargs))


def json_list_field() -> Any:
    return Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )


def params_field(default: str) -> Any:
    # JSONB on PostgreSQL: filters read single keys (`params -> 'T'`) and compare by type.
    kind = JSON().with_variant(JSONB(), "postgresql")
    factory = dict if default == "{}" else list
    return Field(
        default_factory=factory,
        sa_column=Column(kind, nullable=False, server_default=text(f"'{default}'")),
    )


def json_or_null_field() -> Any:
    # None is stored as SQL NULL (not the JSON text 'null'), so `IS NULL` finds it.
    return Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
