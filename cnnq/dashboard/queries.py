"""What the dashboard shows, read from the job database: pure queries returning DataFrames and dicts.

Pages stay thin: they open a session, call these, and draw. Nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from cnnq.db.clock import read_db_now
from cnnq.db.jobs import children_of, list_jobs
from cnnq.db.orm import Artifact, Job, Worker
from cnnq.db.records import artifacts_of, curve_points, last_metrics, metric_history
from cnnq.db.status import JobStatus
from cnnq.db.tables import utcnow
from cnnq.db.workers import list_workers, worker_state
from cnnq.jobs.spec import shard_inputs
from cnnq.outputs import MODEL_ARTIFACT

TIME_WINDOWS: dict[str, timedelta | None] = {
    "last hour": timedelta(hours=1),
    "last day": timedelta(days=1),
    "last week": timedelta(days=7),
    "all time": None,
}


def model_of(spec: dict[str, Any]) -> str:
    """A train job's model name; an eval or infer job's training job; a sweep's fixed model."""
    return str(spec.get("model") or spec.get("model_from") or (spec.get("train") or {}).get("model") or "")


def dataset_of(spec: dict[str, Any]) -> str:
    """The dataset of a train or eval job (or of a sweep's trials); the input of an infer job."""
    return str(spec.get("dataset") or spec.get("input") or (spec.get("train") or {}).get("dataset") or "")


def duration_of(job: Job, now: datetime | None = None) -> timedelta | None:
    """Run time so far: started to finished, or started to now while it runs."""
    if job.started_at is None:
        return None
    end = job.finished_at or (now or utcnow())
    return end - job.started_at


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = round(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def any_running(session: Session) -> bool:
    """Whether a job is queued or running, so that a page should keep refreshing."""
    active = (JobStatus.QUEUED, JobStatus.RUNNING)
    return session.scalar(select(Job.id).where(Job.status.in_(active)).limit(1)) is not None


def history_frame(session: Session, job_id: str) -> pd.DataFrame:
    """One row per epoch with a column per metric (empty when the job reported none)."""
    history = metric_history(session, job_id)
    frame = pd.DataFrame(history)
    if frame.empty:
        return pd.DataFrame({"epoch": pd.Series(dtype=int)})
    return frame.sort_values("epoch").reset_index(drop=True)


def epoch_history(session: Session, job_id: str) -> pd.DataFrame:
    """Per-epoch curves of a training job: the steps that carry training metrics."""
    frame = history_frame(session, job_id)
    if "train_loss" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["train_loss"].notna()].reset_index(drop=True)


def curve_frame(session: Session, job_id: str) -> pd.DataFrame:
    """A training job's within-epoch curve: one row per step with `time` and a column per name."""
    points = curve_points(session, job_id)
    if not points:
        return pd.DataFrame(columns=["step", "time"])
    frame = pd.DataFrame(points, columns=["step", "name", "value", "time"])
    values = frame.pivot_table(index="step", columns="name", values="value", aggfunc="last")
    times = frame.groupby("step")["time"].max()
    return values.join(times).reset_index()


def artifacts_frame(session: Session, job_id: str) -> pd.DataFrame:
    rows = [
        {"kind": a.kind, "size": format_bytes(a.bytes), "bytes": a.bytes, "path": a.uri, "sha256": a.sha256}
        for a in artifacts_of(session, job_id)
    ]
    return pd.DataFrame(rows, columns=["kind", "size", "bytes", "path", "sha256"])


def per_class_frame(result: dict[str, Any]) -> pd.DataFrame:
    """An evaluation's per-class table, whether stored as a list of rows or a mapping by class."""
    per_class = result.get("per_class") or []
    if isinstance(per_class, dict):
        rows = [{"class": name, **values} for name, values in per_class.items()]
    else:
        rows = list(per_class)
    return pd.DataFrame(rows)


def trained_models(session: Session) -> pd.DataFrame:
    """Finished training jobs that left a model file: the choices of the X-ray check."""
    rows = session.execute(
        select(Job, Artifact.uri)
        .join(Artifact, (Artifact.job_id == Job.id) & (Artifact.kind == MODEL_ARTIFACT))
        .where(Job.kind == "train", Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.created_at.desc(), Job.id)
    ).all()
    return pd.DataFrame(
        [
            {
                "id": job.id,
                "model": model_of(job.spec),
                "dataset": dataset_of(job.spec),
                "path": uri,
                "label": f"{job.id} · {model_of(job.spec)} on {dataset_of(job.spec)}",
            }
            for job, uri in rows
        ],
        columns=["id", "model", "dataset", "path", "label"],
    )


def differing_options(specs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The options whose values differ between jobs: one row per job, one column per option (in the
    order the jobs give them)."""
    keys = list(dict.fromkeys(key for spec in specs.values() for key in spec))
    differing = [key for key in keys if len({repr(spec.get(key)) for spec in specs.values()}) > 1]
    # Values display as text: one column may hold None next to numbers.
    rows = [
        {"job": job_id, **{key: "" if spec.get(key) is None else str(spec.get(key)) for key in differing}}
        for job_id, spec in specs.items()
    ]
    return pd.DataFrame(rows, columns=["job", *differing])


FINAL_METRICS = ["val_accuracy", "val_loss", "train_accuracy", "train_loss", "test_accuracy", "test_loss"]


def comparison(
    session: Session, job_ids: Sequence[str], *, differing_only: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training curves of several jobs stacked in one long frame, and their summary table: one row per
    job with its status, epochs run, duration, model and dataset, the hyperparameters it used (those that
    differ between the jobs, unless `differing_only` is off), its best metrics and its final ones."""
    from cnnq.dashboard.runs import METRIC_SUMMARIES, hyperparameters_of, metric_summaries

    curves = []
    options: dict[str, dict[str, Any]] = {}
    rows = []
    summaries = metric_summaries(session, list(job_ids))
    for job_id in job_ids:
        job = session.get(Job, job_id)
        if job is None:
            continue
        options[job.id] = {
            "model": model_of(job.spec),
            "dataset": dataset_of(job.spec),
            **hyperparameters_of(job),
        }
        history = epoch_history(session, job.id)
        if not history.empty:
            curves.append(history.assign(job=job.id))
        last = last_metrics(session, job.id)
        duration = duration_of(job)
        rows.append(
            {
                "job": job.id,
                "status": str(job.status),
                "epochs run": len(history),
                "duration (s)": round(duration.total_seconds(), 1) if duration is not None else None,
                **{label: summaries.get(job.id, {}).get(label) for label in METRIC_SUMMARIES},
                **{f"final {name}": last.get(name) for name in FINAL_METRICS if not name.startswith("test_")},
            }
        )
    curve_frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["job", "epoch"])
    if not rows:
        return curve_frame, pd.DataFrame()
    chosen = differing_options(options) if differing_only and len(options) > 1 else _all_options(options)
    summary = chosen.join(pd.DataFrame(rows).set_index("job"), on="job")
    return curve_frame, summary.dropna(axis="columns", how="all")


def _all_options(options: dict[str, dict[str, Any]]) -> pd.DataFrame:
    keys = list(dict.fromkeys(key for values in options.values() for key in values))
    rows = [
        {"job": job_id, **{k: "" if v.get(k) is None else str(v.get(k)) for k in keys}}
        for job_id, v in options.items()
    ]
    return pd.DataFrame(rows, columns=["job", *keys])


def bulk_jobs(session: Session, limit: int = 200) -> list[Row[Any]]:
    """Top-level inference jobs (a bulk parent, or a single unsharded job)."""
    return list_jobs(session, kinds=("infer",), top_level=True, limit=limit)


def shards_frame(session: Session, job: Job) -> pd.DataFrame:
    """Progress of each shard of a bulk job; an unsharded job is its own single shard."""
    shards = children_of(session, job.id) or [job]
    now = utcnow()
    rows = [
        {
            "shard": shard.id,
            "status": str(shard.status),
            "progress": float(shard.progress or 0.0),
            "inputs": len(shard_inputs(shard.spec)),
            "worker": shard.worker or "",
            "duration": format_duration(duration_of(shard, now)),
            "message": shard.message or "",
        }
        for shard in shards
    ]
    return pd.DataFrame(
        rows, columns=["shard", "status", "progress", "inputs", "worker", "duration", "message"]
    )


def workers_frame(session: Session, lost_after: timedelta) -> pd.DataFrame:
    """The workers that have registered, with their hardware and how recently they beat."""
    now = read_db_now(session)
    running: dict[str, list[str]] = {}
    for worker_name, job_id in session.execute(
        select(Job.worker, Job.id)
        .where(Job.status == JobStatus.RUNNING, Job.worker.is_not(None))
        .order_by(Job.id)
    ):
        running.setdefault(worker_name, []).append(job_id)
    rows = []
    for worker in list_workers(session, include_stopped=True):
        age = now - worker.heartbeat_at
        state = worker_state(worker, lost_after, now)
        gpu = ""
        if worker.gpu_name:
            gpu = (
                f"{worker.gpu_index}: {worker.gpu_name}" if worker.gpu_index is not None else worker.gpu_name
            )
        rows.append(
            {
                "worker": worker.name,
                "state": state,
                "current job": ", ".join(running.get(worker.name, [])),
                "host": worker.hostname,
                "pid": worker.pid,
                "queues": ", ".join(str(q) for q in worker.queues or []),
                "gpu": gpu,
                "GPU memory (MiB)": worker.gpu_memory_mb,
                "host RAM (MiB)": worker.memory_mb,
                "last heartbeat": worker.heartbeat_at,
                "seconds since": round(age.total_seconds(), 1),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "worker",
            "state",
            "current job",
            "host",
            "pid",
            "queues",
            "gpu",
            "GPU memory (MiB)",
            "host RAM (MiB)",
            "last heartbeat",
            "seconds since",
        ],
    )


def job_queues(session: Session) -> list[str]:
    """Queue names the jobs were sent to and the workers listen on."""
    names = set(session.scalars(select(Job.queue).distinct()))
    for queues in session.scalars(select(Worker.queues)):
        names.update(str(q) for q in queues or [])
    return sorted(n for n in names if n)
