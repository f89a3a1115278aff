"""Database tables. Only the server imports this; the wire shapes live in `farmhand.wire`.

The hot queue row (`record`) stays narrow: result documents live in `record_result` and log
tails on `run`, where the claim statement never touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from farmhand.server.columns import (
    IDS_NEVER_REUSED,
    json_field,
    json_list_field,
    json_or_null_field,
    params_field,
    when_field,
)
from farmhand.server.columns import UTCDateTime as UTCDateTime  # re-exported
from farmhand.server.columns import utcnow as utcnow  # re-exported


class Campaign(SQLModel, table=True):
    """A named, versioned group of records."""

    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_campaign_name_version"),
        IDS_NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int = 1
    software: str | None = None
    defaults: dict[str, Any] = json_field()
    based_on_id: int | None = Field(default=None, foreign_key="campaign.id")
    created_at: datetime = when_field(now=True)
    started_at: datetime | None = when_field()
    finished_at: datetime | None = when_field()
    #: The names of its records' params (sorted): the results table's columns, and what a
    #: filter may name.
    params: list[str] = params_field("[]")
    #: The last generation stamped on its ended records (`catalog/ended.py`).
    end_seq: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0"))
    )
    #: Archived: left out of the overview, `status` and listings unless asked for.
    archived_at: datetime | None = when_field()
    #: The token that created it (None: before migration 0010, or imported): it or an admin
    #: may delete the campaign.
    created_by: int | None = None


class Record(SQLModel, table=True):
    """One calculation. `lease_expires_at`, `agent_id` and `run_id` describe its live lease."""

    __table_args__ = (
        UniqueConstraint("campaign_id", "key", name="uq_record_campaign_key"),
        Index("ix_record_campaign_state", "campaign_id", "state"),
        # A campaign's records in id order: listings, results tables and bulk actions walk
        # it page by page (on SQLite the rowid would follow campaign_id anyway).
        Index("ix_record_campaign_id", "campaign_id", "id"),
        Index(
            "ix_record_live_lease",
            "lease_expires_at",
            sqlite_where=text("state IN ('claimed', 'running')"),
            postgresql_where=text("state IN ('claimed', 'running')"),
        ),
        Index("ix_record_agent", "agent_id"),
        Index("ix_record_campaign_dataset", "campaign_id", "dataset"),
        IDS_NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    key: str
    command: str = Field(sa_column=Column(Text, nullable=False))
    params: dict[str, Any] = params_field("{}")
    priority: int = 0
    run_args: dict[str, Any] = json_field()
    temporary_run_args: dict[str, Any] | None = json_or_null_field()
    dataset: str | None = None
    tags: list[str] = json_list_field()
    # What the claim matches agents against, from the effective run_args at submission.
    runner: str = Field(default="subprocess", sa_column_kwargs={"server_default": "subprocess"})
    cores: float | None = None
    gpus: int | None = None
    memory_mb: int | None = None
    walltime: float | None = None
    state: str = "ready"
    attempts: int = 0
    max_attempts: int = 3
    error: str | None = Field(default=None, sa_column=Column(Text))
    agent_id: int | None = None
    run_id: int | None = None
    lease_expires_at: datetime | None = when_field()
    #: A ready record is not claimed before this moment: a failed attempt's `retry_delay`
    #: (NULL: claimable now; a moment past is harmless, so nothing clears it but a retry).
    not_before: datetime | None = when_field()
    created_at: datetime = when_field(now=True)
    updated_at: datetime = when_field(now=True)
    #: The generation in which a reader of "what ended since" first saw it ended; NULL while
    #: it has not ended, or has ended and not yet been stamped (`catalog/ended.py`).
    end_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class RecordParent(SQLModel, table=True):
    """An edge of the dependency graph: `record_id` waits for `parent_id` to be done."""

    __tablename__ = "record_parent"
    __table_args__ = (Index("ix_record_parent_parent", "parent_id"),)

    record_id: int = Field(primary_key=True, foreign_key="record.id")
    parent_id: int = Field(primary_key=True, foreign_key="record.id")


class RecordResult(SQLModel, table=True):
    """The result document (`results.json`) of a record's successful run."""

    __tablename__ = "record_result"

    record_id: int = Field(primary_key=True, foreign_key="record.id")
    run_id: int
    document: Any = Field(sa_column=Column(JSON, nullable=True))


class Run(SQLModel, table=True):
    """One attempt of a record by one agent under one lease, fenced by `token`."""

    __table_args__ = (
        Index("ix_run_record", "record_id", "id"),
        Index("ix_run_agent", "agent_id"),
        Index("ix_run_archive", "archive"),
        IDS_NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="record.id")
    agent_id: int | None = None
    token: str = Field(unique=True)
    attempt: int
    state: str = "leased"
    claimed_at: datetime = when_field(now=True)
    started_at: datetime | None = when_field()
    ended_at: datetime | None = when_field()
    exit_code: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    stdout_tail: str | None = Field(default=None, sa_column=Column(Text))
    stderr_tail: str | None = Field(default=None, sa_column=Column(Text))
    run_args: dict[str, Any] | None = json_or_null_field()
    report: str | None = Field(
        default=None, sa_column=Column(Text), description="digest of the final report (idempotency)"
    )
    archive: str | None = Field(
        default=None,
        sa_column=Column(String(64), ForeignKey("snapshot.sha256"), nullable=True),
        description="sha256 of the run directory's tar.gz",
    )


class Agent(SQLModel, table=True):
    """A registered worker process."""

    __table_args__ = IDS_NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    name: str
    host: str
    pid: int | None = None
    slots: int = 1
    labels: dict[str, Any] = json_field()
    state: str = "active"
    token_id: int | None = None
    registered_at: datetime = when_field(now=True)
    last_heartbeat: datetime = when_field(now=True)
    status: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="the wire.AgentStatus of its last heartbeat (paused, disk, outbox, …)",
    )
    runners: list[str] | None = Field(
        default=None,
        sa_column=Column(JSON(none_as_null=True), nullable=True),
        description="runner names it offered at registration (None: not said)",
    )
    resources: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON(none_as_null=True), nullable=True),
        description="its total wire.Resources at registration (None: not said)",
    )


def _sha256(**kwargs: Any) -> Any:
    return Field(sa_column=Column(String(64), ForeignKey("snapshot.sha256"), **kwargs))


class Snapshot(SQLModel, table=True):
    """Immutable bytes in the blob store, addressed by their sha256. A row exists only once
    its blob is stored and verified; blobs are never changed, so a row never goes stale."""

    sha256: str = Field(sa_column=Column(String(64), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = when_field(now=True)
    token_id: int | None = Field(default=None, description="who uploaded it first")


class SnapshotBytes(SQLModel, table=True):
    """A small snapshot's bytes, kept in the database beside its row rather than in the blob
    store (`Settings.inline_snapshot_bytes`): a row written in the upload's own transaction
    costs far less than a file, its fsync and its directory entries (issue 16)."""

    __tablename__ = "snapshot_bytes"

    sha256: str = Field(
        sa_column=Column(String(64), ForeignKey("snapshot.sha256"), primary_key=True)
    )
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class RecordInput(SQLModel, table=True):
    """A file staged into a record's run directory: `path` (relative) holds snapshot `sha256`."""

    __tablename__ = "record_input"
    __table_args__ = (Index("ix_record_input_sha256", "sha256"),)

    record_id: int = Field(primary_key=True, foreign_key="record.id")
    path: str = Field(sa_column=Column(Text, primary_key=True))
    sha256: str = _sha256(nullable=False)


class Checkpoint(SQLModel, table=True):
    """A checkpoint a run saved; a record's next attempt restores its newest (highest id)."""

    __table_args__ = (
        Index("ix_checkpoint_record", "record_id", "id"),
        Index("ix_checkpoint_sha256", "sha256"),
        IDS_NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="record.id")
    run_id: int = Field(foreign_key="run.id")
    sha256: str = _sha256(nullable=False)
    created_at: datetime = when_field(now=True)


class Token(SQLModel, table=True):
    """A bearer token; only its sha256 is stored."""

    __table_args__ = IDS_NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    role: str
    digest: str = Field(unique=True)
    created_at: datetime = when_field(now=True)
    revoked: bool = False


class Autoscaler(SQLModel, table=True):
    """The lease one autoscaler holds for its name (its filters), fenced by `token`, and
    what it last said (`status`: idle, unfit records, its effective limits)."""

    name: str = Field(sa_column=Column(String(200), primary_key=True))
    holder: str
    token: str
    expires_at: datetime = when_field(now=True)
    updated_at: datetime = when_field(now=True)
    status: dict[str, Any] = json_field()


class Allocation(SQLModel, table=True):
    """A batch job an autoscaler submitted (`farmhand autoscale`); agents started by it
    carry its job id in their labels."""

    __table_args__ = (
        UniqueConstraint("scheduler", "job_id", name="uq_allocation_job"),
        Index("ix_allocation_autoscaler_state", "autoscaler", "state"),
        IDS_NEVER_REUSED,
    )
    id: int | None = Field(default=None, primary_key=True)
    autoscaler: str = Field(sa_column=Column(String(200), nullable=False))
    scheduler: str
    job_id: str
    state: str = "pending"
    submitted_at: datetime = when_field(now=True)
    updated_at: datetime = when_field(now=True)
    submitted_for: dict[str, Any] = json_field()
    note: str | None = Field(default=None, sa_column=Column(Text))


# The ready queue, in claim order: a partial index so the claim reads only ready rows.
Index(
    "ix_record_ready",
    Record.__table__.c.priority.desc(),
    Record.__table__.c.id,
    sqlite_where=text("state = 'ready'"),
    postgresql_where=text("state = 'ready'"),
)
# The same order within one campaign, for agents that serve one (`--campaign C`): without
# it SQLite reads the campaign's ready records by ix_record_campaign_state and sorts them all.
Index(
    "ix_record_ready_campaign",
    Record.__table__.c.campaign_id,
    Record.__table__.c.priority.desc(),
    Record.__table__.c.id,
    sqlite_where=text("state = 'ready'"),
    postgresql_where=text("state = 'ready'"),
)

# "What ended since generation G" (`catalog/ended.py`): the stamped records of a campaign in
# generation order, and the ended ones still to stamp (few, so a partial index).
# Partial: only stamped records (a comparison on end_seq implies NOT NULL, so reads use it),
# and the unended millions cost it nothing at submission.
Index(
    "ix_record_campaign_end",
    Record.__table__.c.campaign_id,
    Record.__table__.c.end_seq,
    Record.__table__.c.id,
    sqlite_where=text("end_seq IS NOT NULL"),
    postgresql_where=text("end_seq IS NOT NULL"),
)
ENDED = "state IN ('cancelled', 'done', 'failed', 'orphaned')"  # as literal_in writes it
Index(
    "ix_record_unstamped",
    Record.__table__.c.campaign_id,
    sqlite_where=text(f"end_seq IS NULL AND {ENDED}"),
    postgresql_where=text(f"end_seq IS NULL AND {ENDED}"),
)

# A campaign's finished records in the order they ended (`views/charts.py`: the campaign
# page's timeline and run times). Partial: the claim never writes it (migration 0013).
Index(
    "ix_record_campaign_ended",
    Record.__table__.c.campaign_id,
    Record.__table__.c.state,
    Record.__table__.c.updated_at,
    sqlite_where=text("state IN ('done', 'failed')"),
    postgresql_where=text("state IN ('done', 'failed')"),
)

# Key-prefix search on PostgreSQL (the campaign page's `key` filter): `LIKE 'p%'` reads a
# b-tree only under the C collation or through text_pattern_ops. SQLite compares keys as
# bytes, so its unique (campaign_id, key) index already serves a prefix as a range.
Index(
    "ix_record_campaign_key_pattern",
    Record.__table__.c.campaign_id,
    Record.__table__.c.key,
    postgresql_ops={"key": "text_pattern_ops"},
).ddl_if(dialect="postgresql")

# The tables' Core handles, for the statements built with SQLAlchemy Core (one home: every
# module imports these rather than taking `__table__` itself).
CAMPAIGN = Campaign.__table__
AGENT = Agent.__table__
REC = Record.__table__
EDGE = RecordParent.__table__
INPUT = RecordInput.__table__
RESULT = RecordResult.__table__
RUN = Run.__table__
CHECKPOINT = Checkpoint.__table__
SNAPSHOT = Snapshot.__table__
SNAPSHOT_BYTES = SnapshotBytes.__table__
ALLOCATION = Allocation.__table__
AUTOSCALER = Autoscaler.__table__

# Every table above, for Alembic (migrations compare against it; the server never calls
# create_all: migrations build the schema).
metadata = SQLModel.metadata


def include_object_for(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` hook for `dialect`: leaves out what `ddl_if` keeps off it
    (Alembic's compare does not read `ddl_if` itself)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        declared = compare_to if reflected else obj
        condition = getattr(declared, "_ddl_if", None)
        return condition is None or condition.dialect in (None, dialect)

    return include
