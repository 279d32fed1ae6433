"""The runs table: one page of jobs with their hyperparameters and metrics, filtered, sorted and paged in
SQL, so that a database of thousands of jobs costs what one page of them costs.

Hyperparameters are the ones the job used (its result's `hyperparameters`, recorded as training
starts: `cnnq.jobs.hyperparameters`); a job that has not recorded them yet shows the values its spec
would give. Metrics are summarised per job in SQL: the best validation accuracy and loss over the epochs,
the test accuracy, and an evaluation's accuracy and ROC AUC. Nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import ValidationError
from sqlalchemy import Float, String, case, cast, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FunctionElement

from cnnq.db.clock import db_now
from cnnq.db.orm import Job, Metric
from cnnq.db.status import JobStatus
from cnnq.jobs.hyperparameters import effective_hyperparameters
from cnnq.jobs.spec import TrainSpec

SHOWN_HYPERPARAMETERS = (
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "batch_size",
    "epochs",
    "schedule",
    "augment",
)
"""The hyperparameter columns of the runs table (the job page shows them all)."""

METRIC_SUMMARIES: dict[str, tuple[str, str]] = {
    "best val_accuracy": ("val_accuracy", "max"),
    "best val_loss": ("val_loss", "min"),
    "test_accuracy": ("test_accuracy", "max"),
    "accuracy": ("accuracy", "max"),
    "roc_auc": ("roc_auc", "max"),
}
"""Column -> (metric name, how its epochs are summarised). A job has one test_accuracy, accuracy and
roc_auc (taken as the max of one value)."""

NUMERIC_HYPERPARAMETERS = ("lr", "weight_decay", "momentum", "batch_size", "epochs")

SORTS = ("created", "duration (s)", *METRIC_SUMMARIES, *NUMERIC_HYPERPARAMETERS, "status", "kind")
"""What the table can be sorted by, in SQL."""

COLUMNS = [
    "open",
    "id",
    "status",
    "kind",
    "model",
    "dataset",
    "trained by",
    *METRIC_SUMMARIES,
    "duration (s)",
    "progress",
    "shards",
    *SHOWN_HYPERPARAMETERS,
    "worker",
    "created",
]


class elapsed_seconds(FunctionElement[float]):
    """Seconds from `start` to `end` (or to the database's now while `end` is null), in SQL."""

    type = Float()
    inherit_cache = True


@compiles(elapsed_seconds)
def _elapsed_default(element: Any, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM (COALESCE({end}, statement_timestamp()) - {start}))"


@compiles(elapsed_seconds, "sqlite")
def _elapsed_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    now = compiler.process(db_now(), **kw)
    return f"((julianday(COALESCE({end}, {now})) - julianday({start})) * 86400.0)"


@dataclass(frozen=True)
class RunFilter:
    statuses: Sequence[JobStatus] = ()
    kinds: Sequence[str] = ()
    since: datetime | None = None
    search: str = ""
    """Part of the job's id, or of its spec (model, dataset, input...)."""
    include_shards: bool = False
    ids: Sequence[str] = field(default_factory=tuple)
    """Only these jobs (Compare's choices); empty: all."""


def _conditions(run_filter: RunFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if run_filter.statuses:
        conditions.append(Job.status.in_(run_filter.statuses))
    if run_filter.kinds:
        conditions.append(Job.kind.in_(run_filter.kinds))
    if run_filter.since is not None:
        conditions.append(Job.created_at >= run_filter.since)
    if run_filter.ids:
        conditions.append(Job.id.in_(run_filter.ids))
    if run_filter.search.strip():
        pattern = f"%{run_filter.search.strip().lower()}%"
        conditions.append(func.lower(Job.id).like(pattern) | func.lower(cast(Job.spec, String)).like(pattern))
    if not run_filter.include_shards:  # a bulk job's shards fold under it; a sweep's trials are runs
        conditions.append(Job.parent_id.is_(None) | (Job.kind == "train"))
    return conditions


def _metric_summary(job_ids: Sequence[str] | None = None) -> Any:
    """One row per job with each of `METRIC_SUMMARIES` (null where the job has not reported it)."""
    columns = []
    for label, (name, how) in METRIC_SUMMARIES.items():
        value = case((Metric.name == name, Metric.value))
        columns.append((func.max(value) if how == "max" else func.min(value)).label(label))
    query = select(Metric.job_id, *columns).group_by(Metric.job_id)
    if job_ids is not None:
        query = query.where(Metric.job_id.in_(job_ids))
    return query.subquery()


def count_runs(session: Session, run_filter: RunFilter) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(*_conditions(run_filter))) or 0


def runs_page(
    session: Session,
    run_filter: RunFilter,
    *,
    sort: str = "created",
    descending: bool = True,
    page: int = 1,
    page_size: int = 50,
) -> pd.DataFrame:
    """Page `page` (from 1) of the jobs that `run_filter` selects, as the runs table's rows.

    Sorted by creation, a bulk job's shards (when shown) follow their parent, and a sweep's trials
    their sweep. Other sorts put the jobs that lack the value last.
    """
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; one of {', '.join(SORTS)}")
    duration = elapsed_seconds(Job.started_at, Job.finished_at)
    query = select(Job, case((Job.started_at.is_(None), None), else_=duration).label("duration"))
    query = query.where(*_conditions(run_filter))
    summary = None
    if sort == "created":
        parent = aliased(Job)
        group_time = func.coalesce(parent.created_at, Job.created_at)
        group_id = func.coalesce(parent.id, Job.id)
        query = query.outerjoin(parent, Job.parent_id == parent.id)
        order = [
            group_time.desc() if descending else group_time.asc(),
            group_id,
            Job.parent_id.is_not(None),
            Job.id,
        ]
    else:
        if sort in METRIC_SUMMARIES:
            summary = _metric_summary()
            query = query.outerjoin(summary, summary.c.job_id == Job.id)
            key: Any = summary.c[sort]
        elif sort == "duration (s)":
            key = duration
        elif sort in NUMERIC_HYPERPARAMETERS:
            key = Job.result[("hyperparameters", sort)].as_float()
        else:
            key = getattr(Job, sort)
        order = [
            key.is_(None),
            key.desc() if descending else key.asc(),
            Job.created_at.desc(),
            Job.id,
        ]
    rows = session.execute(
        query.order_by(*order).offset((max(page, 1) - 1) * page_size).limit(page_size)
    ).all()
    jobs = [(job, seconds) for job, seconds in rows]
    ids = [job.id for job, _ in jobs]
    metrics = metric_summaries(session, ids)
    shards = _shard_counts(session, ids)
    records = [_record(job, seconds, metrics.get(job.id, {}), shards.get(job.id)) for job, seconds in jobs]
    return pd.DataFrame(records, columns=COLUMNS)


def metric_summaries(session: Session, job_ids: Sequence[str]) -> dict[str, dict[str, float | None]]:
    if not job_ids:
        return {}
    rows = session.execute(select(_metric_summary(job_ids))).mappings().all()
    return {row["job_id"]: {label: row[label] for label in METRIC_SUMMARIES} for row in rows}


def _shard_counts(session: Session, job_ids: Sequence[str]) -> dict[str, str]:
    """`done/total` shards of each bulk parent among `job_ids`."""
    if not job_ids:
        return {}
    finished = [status for status in JobStatus if status.finished]
    rows = session.execute(
        select(
            Job.parent_id,
            func.count(),
            func.sum(case((Job.status.in_(finished), 1), else_=0)),
        )
        .where(Job.parent_id.in_(job_ids), Job.kind == "infer")
        .group_by(Job.parent_id)
    ).all()
    return {parent: f"{int(done or 0)}/{total}" for parent, total, done in rows}


def hyperparameters_of(job: Job) -> dict[str, Any]:
    """The hyperparameters a training job used, or would use (not recorded yet); {} for other kinds."""
    if job.kind != "train":
        return {}
    recorded = (job.result or {}).get("hyperparameters")
    if recorded:
        return dict(recorded)
    try:
        return effective_hyperparameters(TrainSpec.model_validate(job.spec))
    except ValidationError:
        return {}


def _record(job: Job, seconds: float | None, metrics: dict[str, float | None], shards: str | None) -> dict:
    spec = job.spec or {}
    used = hyperparameters_of(job)
    trained_by = spec.get("model_from")
    return {
        "open": f"job?job={job.id}",
        "id": job.id,
        "status": str(job.status),
        "kind": job.kind,
        "model": str(spec.get("model") or ""),
        "dataset": str(spec.get("dataset") or spec.get("input") or ""),
        "trained by": f"job?job={trained_by}" if trained_by else None,
        **{name: used.get(name) for name in SHOWN_HYPERPARAMETERS},
        **{label: metrics.get(label) for label in METRIC_SUMMARIES},
        "duration (s)": round(seconds, 1) if seconds is not None else None,
        "progress": float(job.progress or 0.0),
        "shards": shards,
        "worker": job.worker or "",
        "created": job.created_at,
    }
