"""Predictions of an inference job, read back: rows for `cnnq results` and the dashboard's download.

A bulk job's rows are keyed by its bulk id (the parent, or the job it resumed); asking for one shard
gives only the rows that shard wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal

from sqlalchemy import Select, select

from cnnq.db.jobs import JobNotFound, bulk_id_of, children_of, get_job
from cnnq.db.tables import predictions
from cnnq.errors import UserError
from cnnq.outputs import positive_class, prediction_columns, prediction_record, write_csv

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

Only = Literal["positive", "flagged"]


@dataclass(frozen=True)
class PredictionScope:
    """Which prediction rows belong to a job, and how to read them."""

    job_id: str
    bulk_id: str
    shard: bool
    classes: list[str]
    positive_class: str | None

    def where(self, query: Select[Any]) -> Select[Any]:
        query = query.where(predictions.c.bulk_id == self.bulk_id)
        return query.where(predictions.c.job_id == self.job_id) if self.shard else query


def prediction_scope(session: Connection | Session, job: Any) -> PredictionScope:
    if job.kind != "infer":
        raise UserError(f"job {job.id} is a {job.kind} job; `cnnq results` reads inference jobs")
    bulk_id = bulk_id_of(job)
    shard = job.parent_id is not None
    classes, positive = _model_classes(session, job, bulk_id)
    return PredictionScope(job.id, bulk_id, shard, classes, positive)


def _model_classes(session: Connection | Session, job: Any, bulk_id: str) -> tuple[list[str], str | None]:
    """The classes and positive class, from the infer results (the job, its shards, the resumed job),
    or else from the class names of a scored row."""
    candidates = [job, *children_of(session, job.id)]
    if bulk_id != job.id:
        try:
            resumed = get_job(session, bulk_id)
        except JobNotFound:
            pass
        else:
            candidates += [resumed, *children_of(session, resumed.id)]
    for candidate in candidates:
        result = candidate.result or {}
        if result.get("classes"):
            return list(result["classes"]), result.get("positive_class")
    probabilities = session.scalar(
        select(predictions.c.probabilities)
        .where(predictions.c.bulk_id == bulk_id, predictions.c.probabilities.is_not(None))
        .limit(1)
    )
    classes = list(probabilities or {})
    return classes, positive_class(classes)


def prediction_records(
    session: Connection | Session, scope: PredictionScope, only: Only | None = None, chunk: int = 5000
) -> Iterator[dict[str, Any]]:
    """One CSV record per input (`cnnq.outputs.prediction_columns`), by input, streamed."""
    query = scope.where(select(predictions)).order_by(predictions.c.input)
    if only == "flagged":
        query = query.where(predictions.c.error.is_not(None))
    elif only == "positive":
        if scope.positive_class is None:
            raise UserError(
                f"--only positive: job {scope.job_id}'s model has {len(scope.classes)} classes; "
                "it needs a two-class model (use --only flagged, or no --only)"
            )
        query = query.where(predictions.c.label == scope.positive_class, predictions.c.error.is_(None))
    for row in session.execute(query.execution_options(yield_per=chunk)):
        yield prediction_record(row, scope.classes)


def write_predictions_csv(
    session: Connection | Session, scope: PredictionScope, stream: IO[str], only: Only | None = None
) -> int:
    """The predictions CSV of `scope`, by input: what `cnnq results`, a bulk job's `--output` and the
    dashboard's download write. Returns the number of rows."""
    return write_csv(prediction_records(session, scope, only), prediction_columns(scope.classes), stream)
