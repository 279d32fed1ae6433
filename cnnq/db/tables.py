"""The job database's tables, as SQLAlchemy Core `Table`s: what a command that only reads and writes
rows needs, without the ORM (importing `sqlalchemy.orm` costs a `cnnq` command about 60 ms).

The mapped classes that workers, the dashboard and sweeps use are mapped onto these tables in
`cnnq.db.orm`. Every schema change also gets an Alembic revision under `migrations/versions/`;
`tests/db/test_migrations.py` checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from cnnq.db.status import JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


metadata = MetaData()


def _job_id(**kwargs: Any) -> Column[str]:
    """A `job_id` column: the job whose row this is, deleted with it."""
    return Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, **kwargs)


def _time(name: str, *, nullable: bool = True, **kwargs: Any) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable, **kwargs)


jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False, index=True),
    Column("spec", JSON, nullable=False),
    Column(
        "status",
        Enum(JobStatus, native_enum=False, length=16, validate_strings=True),
        nullable=False,
        index=True,
    ),
    Column("priority", Integer, nullable=False, default=0),
    Column("queue", String(64), nullable=False),
    Column("parent_id", ForeignKey("jobs.id", ondelete="CASCADE"), index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claims", Integer, nullable=False, default=0, server_default="0"),
    Column("progress", Float, nullable=False, default=0.0),
    Column("message", Text),
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("error_traceback", Text),
    Column("worker", String(255)),
    Column("device", String(64)),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("result", JSON),
    _time("created_at", nullable=False, default=utcnow, index=True),
    _time("started_at"),
    _time("finished_at"),
    _time("heartbeat_at"),
    _time("progress_at"),
    _time("claimed_at"),
    _time("sent_at"),
)
"""A job: its spec and status, and its bookkeeping.

`attempts`: claims by a worker, less those given back by a graceful stop. `claims`: times the job was
claimed, the fencing token: a job process writes only while the row still holds the claim it made.
Stamped on the database's clock: `heartbeat_at`, the running job's worker beat (stale: the worker is
lost); `progress_at`, the job process's last report (stale: the job is stalled); `claimed_at`, when
the current claim began (a per-job `--timeout` counts from it); `sent_at`, when its message was last
sent (null: a queued job whose message is yet to go)."""

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _job_id(index=True),
    Column("step", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", Float, nullable=False),
    _time("time", nullable=False, default=utcnow),
    UniqueConstraint("job_id", "name", "step", name="uq_metrics_job_name_step"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _job_id(index=True),
    Column("kind", String(32), nullable=False),
    Column("uri", Text, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    _time("created_at", nullable=False, default=utcnow),
    UniqueConstraint("job_id", "kind", name="uq_artifacts_job_kind"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _job_id(index=True),
    Column("bulk_id", String(40), nullable=False),
    Column("input", Text, nullable=False),
    Column("label", String(128)),
    Column("score", Float),
    Column("probabilities", JSON),
    Column("error", Text),
    _time("time", nullable=False, default=utcnow),
    UniqueConstraint("bulk_id", "input", name="uq_predictions_bulk_input"),
    Index("ix_predictions_bulk_score", "bulk_id", "score"),
    Index("ix_predictions_bulk_label", "bulk_id", "label", "error"),  # counts read the index only
)
"""One scored (or flagged) input. `bulk_id` is the bulk parent, or the job itself when it has none: an
input appears once per bulk job, however often its shards are delivered."""

unsharded_inputs = Table(
    "unsharded_inputs",
    metadata,
    Column("parent_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("inputs", JSON, nullable=False),
)
"""The inputs of an auto-sized bulk job (`--shard-size auto`) not yet in a shard: its first shard
measures the scoring speed, then the rest are sharded by time and this row is deleted, in one
transaction. Deleting it is what lets exactly one planner shard them."""

logs = Table(
    "logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _job_id(index=True),
    _time("time", nullable=False, default=utcnow),
    Column("line", Text, nullable=False),
)

workers = Table(
    "workers",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", JSON, nullable=False),
    Column("gpu_index", Integer),
    Column("gpu_name", String(255)),
    Column("gpu_memory_mb", Integer),
    Column("memory_mb", Integer),
    _time("started_at", nullable=False, default=utcnow),
    _time("heartbeat_at", nullable=False, default=utcnow),
    _time("stopped_at"),
)

sweeps = Table(
    "sweeps",
    metadata,
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("leased_by", String(64)),
    _time("leased_at"),
)
"""A hyperparameter sweep's bookkeeping beside its job row (kind `sweep`, see `cnnq.sweeps`): the lease
that lets one process at a time ask the sweep's Optuna study for trials (`leased_at`, on the database's
clock: one older than `cnnq.sweeps.trials.LEASE_SECONDS` is free again). The study itself lives in
Optuna's own tables in this database, named after the sweep's job."""

sweep_trials = Table(
    "sweep_trials",
    metadata,
    Column("sweep_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, primary_key=True),
    _job_id(),
    Column("study_trial_id", Integer, nullable=False),
    Column("told", Boolean, nullable=False, default=False),
    UniqueConstraint("job_id", name="uq_sweep_trials_job_id"),
)
"""One trial of a sweep: its number in the study, its train job and its Optuna trial (`study_trial_id`,
its id in Optuna's tables; `told`: whether the study has been told how the trial's job ended). The key
(sweep, number) is what makes a trial's job exist once, however often it is asked for."""


def owned_by_cnnq(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name`: cnnq's migrations compare cnnq's own tables only. A sweep's Optuna
    study lives in the same database, in Optuna's tables (`cnnq.sweeps.study`), which Optuna creates."""
    return type_ != "table" or name in metadata.tables
