"""What the job page says about one job beyond its own row: its times and ETA, the jobs linked to it
(the training job an evaluation or inference used; the evaluations and bulk jobs that used a training
job's model; a bulk job's shards), its failure in one plain sentence, and its log, searched in SQL.
Nothing here imports Streamlit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cnnq.db.orm import Job, LogLine
from cnnq.outputs import CHECKPOINT_ARTIFACT, MODEL_ARTIFACT, REPORT_ARTIFACT

LOG_LINES = 500


@dataclass(frozen=True)
class JobTimes:
    created: datetime
    started: datetime | None
    finished: datetime | None
    duration: timedelta | None
    """Started to finished, or to now while it runs."""
    eta: timedelta | None
    """Time left at the pace so far (a running job with some progress); None otherwise."""


def job_times(job: Job, now: datetime) -> JobTimes:
    duration = eta = None
    if job.started_at is not None:
        duration = (job.finished_at or now) - job.started_at
        progress = float(job.progress or 0.0)
        if job.finished_at is None and 0.0 < progress < 1.0:
            eta = duration * ((1.0 - progress) / progress)
    return JobTimes(job.created_at, job.started_at, job.finished_at, duration, eta)


def jobs_using(session: Session, train_id: str) -> pd.DataFrame:
    """The top-level evaluations and inference jobs that used training job `train_id`'s model."""
    uses = Job.spec["model_from"].as_string() == train_id
    jobs = session.scalars(
        select(Job).where(uses, Job.parent_id.is_(None)).order_by(Job.created_at.desc(), Job.id).limit(200)
    ).all()
    return pd.DataFrame(
        [
            {
                "job": f"job?job={job.id}",
                "kind": job.kind,
                "status": str(job.status),
                "created": job.created_at,
            }
            for job in jobs
        ],
        columns=["job", "kind", "status", "created"],
    )


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)')
_PLAIN = {
    "AssertionError": "a check in the code failed",
    "FileNotFoundError": "a file it needs is missing",
    "PermissionError": "it may not read or write a file it needs",
    "MemoryError": "it ran out of memory",
    "KeyError": "a value it looked up was not there",
    "ValueError": "it was given a value it cannot use",
    "TimeoutError": "it took too long",
}


def failure_sentence(error_type: str | None, message: str | None, traceback: str | None) -> str:
    """A failed job's error in one plain sentence: what went wrong and where, never "X: X".

    A message that only repeats the type (an `assert` without text) says where it happened instead: the
    last frame of the traceback and its source line.
    """
    kind = error_type or "Error"
    text = (message or "").strip()
    if text and text != kind:
        first = text.splitlines()[0]
        return f"{first[0].upper()}{first[1:]}" + ("" if first.endswith((".", "!", "?")) else ".")
    what = _PLAIN.get(kind, f"it raised {kind}")
    where = _last_frame(traceback or "")
    return f"The job failed: {what}{where} ({kind} without a message)."


def _last_frame(traceback: str) -> str:
    lines = traceback.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        frame = _FRAME.match(lines[index])
        if frame:
            source = lines[index + 1].strip() if index + 1 < len(lines) else ""
            code = (
                f": `{source}`" if source and not _FRAME.match(source) and not source.startswith("^") else ""
            )
            return f" in {frame['file']}, line {frame['line']}{code}"
    return ""


def log_frame(session: Session, job_id: str, search: str = "") -> tuple[pd.DataFrame, int]:
    """The job's last `LOG_LINES` log lines (those containing `search`, case-insensitive), oldest first,
    with their times; and how many lines match in all."""
    query = select(LogLine.time, LogLine.line).where(LogLine.job_id == job_id)
    count = select(func.count()).select_from(LogLine).where(LogLine.job_id == job_id)
    if search.strip():
        pattern = f"%{search.strip().lower()}%"
        query = query.where(func.lower(LogLine.line).like(pattern))
        count = count.where(func.lower(LogLine.line).like(pattern))
    rows = session.execute(query.order_by(LogLine.id.desc()).limit(LOG_LINES)).all()
    frame = pd.DataFrame([tuple(r) for r in reversed(rows)], columns=["time", "line"])
    return frame, session.scalar(count) or 0


def download_label(kind: str, uri: str) -> str:
    titles = {
        MODEL_ARTIFACT: "Model file",
        CHECKPOINT_ARTIFACT: "Checkpoint",
        REPORT_ARTIFACT: "Evaluation report",
    }
    return titles.get(kind, kind.replace("_", " ").capitalize()) + f" ({uri.rsplit('/', 1)[-1]})"
