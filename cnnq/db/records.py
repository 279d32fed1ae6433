"""What a job leaves behind: metrics, artifacts, log lines and predictions.

Writes are idempotent, so a job delivered twice never duplicates a row: a metric is keyed by
(job, name, step), an artifact by (job, kind), a prediction by (bulk job, input).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Insert, Row, func, select

from cnnq.db.status import JobStatus
from cnnq.db.tables import artifacts, logs, metrics, predictions, utcnow
from cnnq.errors import UserError
from cnnq.outputs import MODEL_ARTIFACT

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

CURVE_PREFIX = "curve/"
"""Metric rows of a training curve within epochs (`Reporter.curve`: step = batches trained), which the
per-epoch `metric_history` and `last_metrics` leave out."""


def _connection(session: Connection | Session) -> Connection:
    return session if isinstance(session, Connection) else session.connection()


def _insert(session: Connection | Session, table: Any) -> Insert:
    from sqlalchemy.dialects import postgresql, sqlite  # 50 ms that commands which only read skip

    dialect = _connection(session).dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"cnnq supports SQLite and PostgreSQL, not {dialect}")


def record_metrics(
    session: Connection | Session, job_id: str, step: int, values: Mapping[str, float]
) -> None:
    if not values:
        return
    now = utcnow()
    rows = [
        {"job_id": job_id, "step": step, "name": k, "value": float(v), "time": now} for k, v in values.items()
    ]
    stmt = _insert(session, metrics).values(rows)
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=["job_id", "name", "step"],
        set_={"value": stmt.excluded.value, "time": stmt.excluded.time},  # type: ignore[attr-defined]
    )
    session.execute(stmt)


def record_artifact(
    session: Connection | Session, job_id: str, kind: str, uri: str, size: int, sha256: str
) -> None:
    stmt = _insert(session, artifacts).values(
        job_id=job_id, kind=kind, uri=uri, bytes=size, sha256=sha256, created_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=["job_id", "kind"],
        set_={
            "uri": stmt.excluded.uri,  # type: ignore[attr-defined]
            "bytes": stmt.excluded.bytes,  # type: ignore[attr-defined]
            "sha256": stmt.excluded.sha256,  # type: ignore[attr-defined]
            "created_at": stmt.excluded.created_at,  # type: ignore[attr-defined]
        },
    )
    session.execute(stmt)


def append_log(session: Connection | Session, job_id: str, lines: Iterable[str]) -> None:
    now = utcnow()
    rows = [{"job_id": job_id, "line": line, "time": now} for line in lines]
    if rows:
        session.execute(_insert(session, logs).values(rows))


def insert_predictions(
    session: Connection | Session, job_id: str, bulk_id: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Bulk-insert prediction rows; an input already scored for this bulk job is left as it was."""
    if not rows:
        return
    now = utcnow()
    values = [
        {
            "job_id": job_id,
            "bulk_id": bulk_id,
            "input": r["input"],
            "label": r.get("label"),
            "score": r.get("score"),
            "probabilities": r.get("probabilities"),
            "error": r.get("error"),
            "time": now,
        }
        for r in rows
    ]
    # One Core statement executed with many parameter sets, no RETURNING: the driver's executemany
    # (psycopg's pipeline of one prepared statement; sqlite3's loop). A `.values(rows)` statement,
    # compiled and parsed afresh for every batch, took 70% of a small-image shard's time (measured).
    stmt = _insert(session, predictions).on_conflict_do_nothing(index_elements=["bulk_id", "input"])  # type: ignore[attr-defined]
    _connection(session).execute(stmt, values)


def inputs_written_by(session: Connection | Session, job_id: str) -> set[str]:
    """Inputs that job `job_id` (any of its attempts) already wrote a row for. Read through the job_id
    index: asking a bulk job's rows for a shard's inputs (`scored_inputs`) was planned as a scan of
    every row of the bulk, since a bulk id being written has no statistics yet (seconds per shard at
    100,000 rows)."""
    return set(session.scalars(select(predictions.c.input).where(predictions.c.job_id == job_id)))


def scored_inputs(
    session: Connection | Session, bulk_id: str, inputs: Sequence[str] | None = None
) -> set[str]:
    """Inputs of a bulk job that already have a row (scored or flagged)."""
    query = select(predictions.c.input).where(predictions.c.bulk_id == bulk_id)
    if inputs is None:
        return set(session.scalars(query))
    found: set[str] = set()
    for start in range(0, len(inputs), 1000):
        found.update(session.scalars(query.where(predictions.c.input.in_(inputs[start : start + 1000]))))
    return found


def metric_history(session: Connection | Session, job_id: str) -> list[dict[str, Any]]:
    """One object per step, `{"epoch": step, name: value, ...}`, in step order."""
    history: dict[int, dict[str, Any]] = {}
    for metric in session.execute(
        select(metrics).where(metrics.c.job_id == job_id, _per_epoch()).order_by(metrics.c.step, metrics.c.id)
    ):
        history.setdefault(metric.step, {"epoch": metric.step})[metric.name] = metric.value
    return [history[step] for step in sorted(history)]


def last_metrics(session: Connection | Session, job_id: str) -> dict[str, float]:
    """Each metric name's value at its highest step."""
    latest: dict[str, tuple[int, float]] = {}
    for name, step, value in session.execute(
        select(metrics.c.name, metrics.c.step, metrics.c.value).where(
            metrics.c.job_id == job_id, _per_epoch()
        )
    ):
        if name not in latest or step >= latest[name][0]:
            latest[name] = (step, value)
    return {name: value for name, (_, value) in latest.items()}


def _per_epoch() -> Any:
    return metrics.c.name.not_like(f"{CURVE_PREFIX}%")


def curve_points(session: Connection | Session, job_id: str) -> list[tuple[int, str, float, Any]]:
    """A job's within-epoch curve: (step, name without the prefix, value, time), in step order."""
    rows = session.execute(
        select(metrics.c.step, metrics.c.name, metrics.c.value, metrics.c.time)
        .where(metrics.c.job_id == job_id, metrics.c.name.like(f"{CURVE_PREFIX}%"))
        .order_by(metrics.c.step, metrics.c.name)
    ).all()
    return [(step, name.removeprefix(CURVE_PREFIX), value, at) for step, name, value, at in rows]


def artifacts_of(session: Connection | Session, job_id: str) -> list[Row[Any]]:
    return list(
        session.execute(select(artifacts).where(artifacts.c.job_id == job_id).order_by(artifacts.c.id))
    )


def find_artifact(session: Connection | Session, job_id: str, kind: str) -> Row[Any] | None:
    return session.execute(
        select(artifacts).where(artifacts.c.job_id == job_id, artifacts.c.kind == kind)
    ).first()


def log_lines(session: Connection | Session, job_id: str, after_id: int = 0) -> list[Row[Any]]:
    return list(
        session.execute(select(logs).where(logs.c.job_id == job_id, logs.c.id > after_id).order_by(logs.c.id))
    )


def prediction_counts(
    session: Connection | Session, bulk_id: str, positive_label: str | None
) -> dict[str, int]:
    total = session.scalar(select(func.count()).where(predictions.c.bulk_id == bulk_id)) or 0
    flagged = (
        session.scalar(
            select(func.count()).where(predictions.c.bulk_id == bulk_id, predictions.c.error.is_not(None))
        )
        or 0
    )
    positive = 0
    if positive_label is not None:
        positive = (
            session.scalar(
                select(func.count()).where(
                    predictions.c.bulk_id == bulk_id, predictions.c.label == positive_label
                )
            )
            or 0
        )
    return {"inputs": total, "scored": total - flagged, "flagged": flagged, "positive": positive}


def model_file_of(session: Connection | Session, job: Any) -> Path:
    """The trained model a SUCCEEDED training job left, or a one-line refusal.

    The one check behind every `--model-from JOB` (submit, run, explain, the dashboard's X-ray check).
    A job still running already has a `best.pt` model artifact, replaced at every better epoch and
    at the end: taking it would score one bulk job with two sets of weights, so only a SUCCEEDED
    job's model is taken.
    """
    if job.kind != "train":
        raise UserError(f"--model-from: job {job.id} is a {job.kind} job; name a training job")
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        raise UserError(
            f"--model-from: job {job.id} is {job.status}; its model is ready once it has SUCCEEDED "
            f"(`cnnq wait {job.id}`)"
        )
    if job.status != JobStatus.SUCCEEDED:
        raise UserError(
            f"--model-from: job {job.id} is {job.status}; only a SUCCEEDED training job's model is used "
            f"(`cnnq retry {job.id}` trains it again)"
        )
    artifact = find_artifact(session, job.id, MODEL_ARTIFACT)
    if artifact is None:
        raise UserError(f"--model-from: job {job.id} left no model file")
    path = Path(artifact.uri)
    if not path.is_file():
        raise UserError(
            f"--model-from: job {job.id}'s model {path} is missing; is CNNQ_ARTIFACT_ROOT shared?"
        )
    return path
