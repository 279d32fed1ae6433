"""The job database's tables, as SQLAlchemy 2.0 typed models.

Every schema change also gets an Alembic revision under `migrations/versions/`;
`tests/db/test_migrations.py` checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: UTCDateTime(),
    }


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]]
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=16, validate_strings=True), index=True
    )
    priority: Mapped[int] = mapped_column(Integer, default=0)
    queue: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts spent: claims by a worker, less those given back by a graceful stop."""
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Times the job was claimed: the fencing token. A job process writes only while the row still
    holds the claim it made; a later claim supersedes it."""
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    result: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    """The running job's worker beat (database clock); stale: the worker is lost."""
    progress_at: Mapped[datetime | None]
    """The job process's last report (database clock); stale: the job is stalled."""
    claimed_at: Mapped[datetime | None]
    """When the current claim began (database clock): a per-job `--timeout` counts from it."""
    sent_at: Mapped[datetime | None]
    """When its message was last sent (database clock); null: a queued job whose message is yet to go."""


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("job_id", "name", "step", name="uq_metrics_job_name_step"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "kind", name="uq_artifacts_job_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    uri: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    """One scored (or flagged) input. `bulk_id` is the bulk parent, or the job itself when it has none:
    an input appears once per bulk job, however often its shards are delivered."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("bulk_id", "input", name="uq_predictions_bulk_input"),
        Index("ix_predictions_bulk_score", "bulk_id", "score"),
        Index("ix_predictions_bulk_label", "bulk_id", "label", "error"),  # counts read the index only
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    bulk_id: Mapped[str] = mapped_column(String(40))
    input: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(128))
    score: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(default=utcnow)


class UnshardedInputs(Base):
    """The inputs of an auto-sized bulk job (`--shard-size auto`) not yet in a shard: its first shard
    measures the scoring speed, then the rest are sharded by time and this row is deleted, in one
    transaction. Deleting it is what lets exactly one planner shard them."""

    __tablename__ = "unsharded_inputs"

    parent_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    inputs: Mapped[list[Any]]


class LogLine(Base):
    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    line: Mapped[str] = mapped_column(Text)


class Worker(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[Any]]
    gpu_index: Mapped[int | None] = mapped_column(Integer)
    gpu_name: Mapped[str | None] = mapped_column(String(255))
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]


class Sweep(Base):
    """A hyperparameter sweep's bookkeeping beside its job row (kind `sweep`, see `cnnq.sweeps`): the
    lease that lets one process at a time ask the sweep's Optuna study for trials. The study itself
    lives in Optuna's own tables in this database, named after the sweep's job."""

    __tablename__ = "sweeps"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    leased_by: Mapped[str | None] = mapped_column(String(64))
    leased_at: Mapped[datetime | None]
    """When the holder took the lease (database clock); one older than `cnnq.sweeps.trials.LEASE_SECONDS`
    is free again."""


class SweepTrial(Base):
    """One trial of a sweep: its number in the study, its train job and its Optuna trial. The key
    (sweep, number) is what makes a trial's job exist once, however often it is asked for."""

    __tablename__ = "sweep_trials"
    __table_args__ = (UniqueConstraint("job_id", name="uq_sweep_trials_job_id"),)

    sweep_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    study_trial_id: Mapped[int] = mapped_column(Integer)
    """The trial's id in Optuna's tables."""
    told: Mapped[bool] = mapped_column(default=False)
    """Whether the study has been told how the trial's job ended (COMPLETE, PRUNED or FAIL)."""


def owned_by_cnnq(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name`: cnnq's migrations compare cnnq's own tables only. A sweep's Optuna
    study lives in the same database, in Optuna's tables (`cnnq.sweeps.study`), which Optuna creates."""
    return type_ != "table" or name in Base.metadata.tables
