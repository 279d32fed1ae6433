"""Run one job by its id: claim the row, run it with a `SqlReporter`, record how it ended.

Safe to call twice for the same job (Redis may deliver a message again): a finished job, or one that
another live worker is running, is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from datetime import timedelta
from typing import Any

from cnnq.db.jobs import get_job, transition
from cnnq.db.records import append_log
from cnnq.db.session import session_scope
from cnnq.db.status import IllegalTransition, JobStatus
from cnnq.db.tables import Job, utcnow
from cnnq.jobs.reporter import JobCancelled
from cnnq.jobs.spec import parse_spec
from cnnq.settings import get_settings
from cnnq.workers.bulk import bulk_id_of, settle_parent
from cnnq.workers.sql_reporter import SqlReporter

log = logging.getLogger(__name__)

TRACEBACK_LINES = 20
_ROW_WAIT_SECONDS = 5.0
"""A message can overtake the commit of its row (submit sends, then commits): wait this long for it."""


def default_worker_name() -> str:
    return f"local-{os.getpid()}@{socket.gethostname()}"


def execute_job(job_id: str, *, worker: str | None = None) -> JobStatus | None:
    """Run job `job_id` here and return the status it ended in (None: no such job)."""
    worker = worker or default_worker_name()
    claim = _claim(job_id, worker)
    if not isinstance(claim, _Claim):
        return claim
    reporter = SqlReporter(job_id, claim.bulk_id)
    reporter.log(f"started on {worker} (attempt {claim.attempts})")
    outcome: dict[str, Any]
    try:
        spec = parse_spec(claim.spec)
        workdir = get_settings().artifact_dir / job_id
        workdir.mkdir(parents=True, exist_ok=True)
        from cnnq.jobs.runner import run_job

        result = run_job(spec, workdir, reporter)
    except JobCancelled:
        outcome = {"target": JobStatus.CANCELLED, "message": "cancelled on request"}
    except Exception as error:
        outcome = {"target": JobStatus.FAILED, **failure_fields(error)}
    else:
        outcome = {"target": JobStatus.SUCCEEDED, "result": _json_safe(result), "message": "succeeded"}
    return _finish(job_id, worker, claim, **outcome)


class _Claim:
    def __init__(self, job: Job) -> None:
        self.spec = dict(job.spec)
        self.attempts = job.attempts
        self.parent_id = job.parent_id
        self.bulk_id = bulk_id_of(job)


def _claim(job_id: str, worker: str) -> _Claim | JobStatus | None:
    settings = get_settings()
    lost_after = timedelta(seconds=settings.lost_after_seconds)
    deadline = time.monotonic() + _ROW_WAIT_SECONDS
    with session_scope() as session:
        while session.get(Job, job_id) is None:
            if time.monotonic() > deadline:
                log.warning("job %s has no row (its submit was rolled back); nothing to do", job_id)
                return None
            session.rollback()
            time.sleep(0.2)
        job = get_job(session, job_id)
        if job.status.finished:
            if job.parent_id is not None:
                settle_parent(session, job.parent_id)
            return job.status
        if job.status == JobStatus.RUNNING:
            stale = job.heartbeat_at is None or utcnow() - job.heartbeat_at > lost_after
            if job.worker != worker and not stale:
                log.info("job %s is running on %s; nothing to do", job_id, job.worker)
                return JobStatus.RUNNING
            try:
                transition(
                    session,
                    job_id,
                    JobStatus.QUEUED,
                    only_if=Job.attempts == job.attempts,
                    message=f"re-queued: worker {job.worker} stopped beating",
                )
            except IllegalTransition:
                return job.status
        if job.cancel_requested:
            transition(session, job_id, JobStatus.CANCELLED, message="cancelled before it started")
            return JobStatus.CANCELLED
        if job.attempts >= settings.max_attempts:
            transition(
                session,
                job_id,
                JobStatus.FAILED,
                error_type="TooManyAttempts",
                error_message=(
                    f"gave up after {job.attempts} attempts: its worker was lost each time "
                    f"(CNNQ_MAX_ATTEMPTS={settings.max_attempts}); see `cnnq logs {job_id}`"
                ),
            )
            return JobStatus.FAILED
        now = utcnow()
        try:
            job = transition(
                session,
                job_id,
                JobStatus.RUNNING,
                only_if=Job.attempts == job.attempts,
                worker=worker,
                device=_device_of(job.spec.get("device", "auto")),
                attempts=job.attempts + 1,
                started_at=job.started_at or now,
                heartbeat_at=now,
                message="running" if job.attempts == 0 else f"resumed (attempt {job.attempts + 1})",
            )
        except IllegalTransition as refused:
            return refused.current
        claim = _Claim(job)
        if claim.parent_id is not None:
            settle_parent(session, claim.parent_id)
        return claim


def _finish(job_id: str, worker: str, claim: _Claim, *, target: JobStatus, **fields: Any) -> JobStatus:
    with session_scope() as session:
        if fields.get("result") is not None:
            reported = get_job(session, job_id).result or {}  # what the job sent through reporter.result()
            fields["result"] = {**reported, **fields["result"]}
        else:
            fields.pop("result", None)
        try:
            job = transition(session, job_id, target, only_if=Job.worker == worker, **fields)
            status = job.status
        except IllegalTransition as refused:
            # Reaped and taken by another worker meanwhile, or cancelled: its state wins.
            status = refused.current
        line = f"{target.lower()}" if status == target else f"ended here as {target}, but the job is {status}"
        if fields.get("error_message"):
            line += f": {fields['error_type']}: {fields['error_message']}"
        append_log(session, job_id, [line])
    if claim.parent_id is not None:
        with session_scope() as session:
            settle_parent(session, claim.parent_id)
    return status


def failure_fields(error: BaseException) -> dict[str, Any]:
    """The error columns of a failed job: type, message, the last lines of the traceback."""
    lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
    error_type = type(error).__name__
    message = str(error) or error_type
    if error_type == "OutOfMemoryError" or "CUDA out of memory" in message:
        message = (
            f"the GPU ran out of memory; submit again with a smaller --batch-size ({message.splitlines()[0]})"
        )
    return {
        "error_type": error_type,
        "error_message": message,
        "error_traceback": "\n".join(lines[-TRACEBACK_LINES:]),
        "message": f"failed: {error_type}",
    }


def _device_of(requested: str) -> str:
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0]
        return f"cuda:{visible}" if visible else "cuda:0"
    return "cpu" if requested == "auto" else "cuda"


def _json_safe(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str))
