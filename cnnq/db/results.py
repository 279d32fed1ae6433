"""Predictions of an inference job, read back: a summary for `cnnq show`, rows for `cnnq results`.

A bulk job's rows are keyed by its bulk id (the parent, or the job it resumed); asking for one shard
gives only the rows that shard wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cnnq.atomic_file import atomic_file
from cnnq.db.jobs import bulk_id_of, children_of, get_job
from cnnq.db.tables import Job, Prediction
from cnnq.errors import UserError
from cnnq.jobs.prediction_table import prediction_columns, prediction_record, write_csv

Only = Literal["positive", "flagged"]
_TOP_REASONS = 10


@dataclass(frozen=True)
class PredictionScope:
    """Which prediction rows belong to a job, and how to read them."""

    job_id: str
    bulk_id: str
    shard: bool
    classes: list[str]
    positive_class: str | None

    def where(self, query: Select[Any]) -> Select[Any]:
        query = query.where(Prediction.bulk_id == self.bulk_id)
        return query.where(Prediction.job_id == self.job_id) if self.shard else query


def prediction_scope(session: Session, job: Job) -> PredictionScope:
    if job.kind != "infer":
        raise UserError(f"job {job.id} is a {job.kind} job; `cnnq results` reads inference jobs")
    bulk_id = bulk_id_of(job)
    shard = job.parent_id is not None
    classes, positive = _model_classes(session, job, bulk_id)
    return PredictionScope(job.id, bulk_id, shard, classes, positive)


def _model_classes(session: Session, job: Job, bulk_id: str) -> tuple[list[str], str | None]:
    """The classes and positive class, from the infer results (the job, its shards, the resumed job),
    or else from the class names of a scored row."""
    candidates = [job, *children_of(session, job.id)]
    if bulk_id != job.id:
        resumed = session.get(Job, bulk_id)
        if resumed is not None:
            candidates += [resumed, *children_of(session, resumed.id)]
    for candidate in candidates:
        result = candidate.result or {}
        if result.get("classes"):
            return list(result["classes"]), result.get("positive_class")
    probabilities = session.scalar(
        select(Prediction.probabilities)
        .where(Prediction.bulk_id == bulk_id, Prediction.probabilities.is_not(None))
        .limit(1)
    )
    classes = list(probabilities or {})
    return classes, classes[1] if len(classes) == 2 else None


def prediction_records(
    session: Session, scope: PredictionScope, only: Only | None = None, chunk: int = 5000
) -> Iterator[dict[str, Any]]:
    """One export record per input (`cnnq.jobs.prediction_table` columns), by path, streamed."""
    query = scope.where(select(Prediction)).order_by(Prediction.input)
    if only == "flagged":
        query = query.where(Prediction.error.is_not(None))
    elif only == "positive":
        if scope.positive_class is None:
            raise UserError(
                f"--only positive: job {scope.job_id}'s model has {len(scope.classes)} classes; "
                "it needs a two-class model (use --only flagged, or no --only)"
            )
        query = query.where(Prediction.label == scope.positive_class, Prediction.error.is_(None))
    for row in session.scalars(query.execution_options(yield_per=chunk)):
        yield prediction_record(row.input, row.label, row.score, row.probabilities, row.error, scope.classes)


def write_predictions_csv(session: Session, job: Job, target: Path) -> int:
    """All of a job's prediction rows, by path, into a CSV file that appears only once complete."""
    scope = prediction_scope(session, job)
    with atomic_file(target) as file:
        return write_csv(prediction_records(session, scope), prediction_columns(scope.classes), file)


def bulk_summary(session: Session, job_id: str) -> dict[str, Any]:
    """What an inference job (bulk or not) has produced so far, for `cnnq show` and the dashboard.

    `rows` counts inputs with a row, `scored` + `flagged` == `rows`; `positive` counts scored rows of
    the positive class (two-class models); `labels` counts per label, `flag_reasons` the commonest
    reasons; `shards` counts shard jobs by status (empty for a job without shards).
    """
    job = get_job(session, job_id)
    scope = prediction_scope(session, job)
    labels = dict(
        session.execute(
            scope.where(select(Prediction.label, func.count()))
            .where(Prediction.error.is_(None))
            .group_by(Prediction.label)
        ).all()
    )
    reasons = session.execute(
        scope.where(select(Prediction.error, func.count()))
        .where(Prediction.error.is_not(None))
        .group_by(Prediction.error)
        .order_by(func.count().desc(), Prediction.error)
    ).all()
    scored = sum(labels.values())
    flagged = sum(count for _, count in reasons)
    shards: dict[str, int] = {}
    for child in children_of(session, job.id):
        shards[str(child.status)] = shards.get(str(child.status), 0) + 1
    return {
        "job_id": job.id,
        "bulk_id": scope.bulk_id,
        "rows": scored + flagged,
        "scored": scored,
        "flagged": flagged,
        "positive": labels.get(scope.positive_class, 0) if scope.positive_class else None,
        "positive_class": scope.positive_class,
        "classes": scope.classes,
        "labels": {str(label): count for label, count in labels.items()},
        "flag_reasons": {str(reason): count for reason, count in reasons[:_TOP_REASONS]},
        "shards": shards,
    }
