"""Running one job by its id, in a job process: claim the row, run the job, record how it ended.

A claim is a conditional UPDATE (QUEUED -> RUNNING, `claims + 1`), so two deliveries of one message can
never both run it. The claim count it took is the run's fencing token: every write the run makes
(`SqlReporter`) and its final status are conditioned on the row still holding that token, so a run whose
job was re-queued and claimed again elsewhere (a paused worker, a partition) writes nothing more.

How a run ends:
- the job returns: SUCCEEDED; it raises: FAILED (type, message, traceback); cancelled: CANCELLED;
  a sweep's trial stopped by its pruner (`JobPruned`): PRUNED;
- its worker is stopping (`JobInterrupted`): back to QUEUED, its attempt given back;
- superseded (`JobSuperseded`): nothing is written, the current claim's run decides;
- the database stayed out past `CNNQ_DB_OUTAGE_SECONDS`: the process exits with `EXIT_DATABASE_LOST`
  and its worker (or, once it answers again, any reaper) puts the job back in the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from threading import Event
from typing import Any

from sqlalchemy import func

from cnnq.db.clock import db_now
from cnnq.db.jobs import bulk_id_of, stale, transition
from cnnq.db.orm import Job
from cnnq.db.outage import DatabaseUnavailable, retrying
from cnnq.db.records import append_log
from cnnq.db.session import session_scope
from cnnq.db.status import IllegalTransition, JobStatus
from cnnq.jobs.reporter import JobCancelled, JobInterrupted, JobPruned, JobSuperseded
from cnnq.jobs.spec import parse_spec
from cnnq.lifecycle.bulk import settle_parent
from cnnq.lifecycle.sql_reporter import SqlReporter
from cnnq.settings import get_settings

log = logging.getLogger(__name__)

TRACEBACK_LINES = 20
EXIT_DATABASE_LOST = 75
"""A job process's exit code when the database stayed out too long: re-queue the job, don't fail it."""


def default_worker_name() -> str:
    return f"local-{os.getpid()}@{socket.gethostname()}"


@dataclass(frozen=True)
class Claim:
    """A run's hold on its job: the token its writes are fenced by, and what it needs to run."""

    job_id: str
    worker: str
    token: int
    attempts: int
    spec: dict[str, Any]
    parent_id: str | None
    bulk_id: str


def execute_job(
    job_id: str,
    *,
    worker: str | None = None,
    on_claim: Callable[[Claim], None] | None = None,
    stop: Event | None = None,
) -> JobStatus | None:
    """Run job `job_id` here and return the status it ended in (None: no such job, or superseded).

    `on_claim` hears the claim (the job process tells its worker the token); setting `stop` asks the
    job to stop at its next check and go back to the queue.
    """

    worker = worker or default_worker_name()
    claim = claim_job(job_id, worker)
    if not isinstance(claim, Claim):
        return claim
    if on_claim is not None:
        on_claim(claim)
    reporter = SqlReporter(
        claim.job_id,
        claim.token,
        claim.bulk_id,
        stop,
        resumed=bool(claim.spec.get("resume")),
        on_metrics=_trial_reports(claim),
    )
    outcome: dict[str, Any]
    try:
        reporter.log(f"started on {worker} (attempt {claim.attempts}, process {os.getpid()})")
        spec = parse_spec(claim.spec)
        workdir = get_settings().artifact_dir / job_id
        workdir.mkdir(parents=True, exist_ok=True)
        from cnnq.jobs.runner import run_job

        run_job(spec, workdir, reporter)  # its result went through `reporter.result`
    except JobSuperseded:
        log.warning("job %s: claim %d was superseded; this run stops and writes nothing", job_id, claim.token)
        return None
    except JobInterrupted:
        return give_back(claim.job_id, claim.token, "re-queued: its worker is stopping", spend=False)
    except JobCancelled:
        outcome = {"target": JobStatus.CANCELLED, "message": "cancelled on request"}
    except JobPruned as pruned:
        outcome = {"target": JobStatus.PRUNED, "message": str(pruned)}
    except DatabaseUnavailable:
        raise  # nothing can be recorded now: the job process exits, and the job is re-queued
    except Exception as error:
        outcome = {"target": JobStatus.FAILED, **failure_fields(error)}
    else:
        outcome = {"target": JobStatus.SUCCEEDED, "message": "succeeded"}
    return finish_claim(claim.job_id, claim.token, **outcome)


def claim_job(job_id: str, worker: str) -> Claim | JobStatus | None:
    """Take job `job_id` for this run, waiting out a database outage; or say why not (its status). A
    sweep's trial that ends here (cancelled or out of attempts) advances its sweep, as any trial's end."""
    patience = get_settings().db_outage_seconds
    claim, ended_child_of = retrying(
        lambda: _claim(job_id, worker), patience=patience, what=f"claiming job {job_id}"
    )
    if ended_child_of is not None:
        _advance_sweep(ended_child_of)
    return claim


def _claim(job_id: str, worker: str) -> tuple[Claim | JobStatus | None, str | None]:
    """The claim, or why not; and the job's parent if the job ended here."""
    settings = get_settings()
    lost_after = timedelta(seconds=settings.lost_after_seconds)
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:  # its submit was rolled back: nothing to do
            log.warning("job %s has no row; nothing to do", job_id)
            return None, None
        if job.status.finished:
            if job.parent_id is not None:
                settle_parent(session, job.parent_id)
            return job.status, None
        if job.status == JobStatus.RUNNING:
            try:  # only a job whose worker stopped beating may be taken over
                transition(
                    session,
                    job_id,
                    JobStatus.QUEUED,
                    only_if=(Job.claims == job.claims) & stale(lost_after),
                    message=f"re-queued: worker {job.worker} stopped beating",
                )
            except IllegalTransition:
                log.info("job %s is %s on %s; nothing to do", job_id, job.status, job.worker)
                return job.status, None
        parent_id = job.parent_id
        if job.cancel_requested:
            transition(session, job_id, JobStatus.CANCELLED, message="cancelled before it started")
            return JobStatus.CANCELLED, parent_id
        if job.attempts >= settings.max_attempts:
            transition(
                session,
                job_id,
                JobStatus.FAILED,
                error_type="TooManyAttempts",
                error_message=(
                    f"gave up after {job.attempts} attempts: its worker was lost or it stalled each time "
                    f"(CNNQ_MAX_ATTEMPTS={settings.max_attempts}); see `cnnq logs {job_id}`"
                ),
            )
            return JobStatus.FAILED, parent_id
        try:
            job = transition(
                session,
                job_id,
                JobStatus.RUNNING,
                only_if=Job.claims == job.claims,
                worker=worker,
                device=_device_of(job.spec.get("device", "auto")),
                attempts=Job.attempts + 1,
                claims=Job.claims + 1,
                started_at=func.coalesce(Job.started_at, db_now()),
                claimed_at=db_now(),
                heartbeat_at=db_now(),
                progress_at=db_now(),
                message="running" if job.attempts == 0 else f"resumed (attempt {job.attempts + 1})",
            )
        except IllegalTransition as refused:
            return refused.current, None
        claim = Claim(
            job_id=job.id,
            worker=worker,
            token=job.claims,
            attempts=job.attempts,
            spec=dict(job.spec),
            parent_id=job.parent_id,
            bulk_id=bulk_id_of(job),
        )
        if claim.parent_id is not None:
            settle_parent(session, claim.parent_id)
        return claim, None


def finish_claim(job_id: str, token: int, *, target: JobStatus, **fields: Any) -> JobStatus:
    """End the run that holds claim `token`: its job becomes `target`, unless another claim (or a cancel
    that ended it) got there first. Waits out a database outage."""
    patience = get_settings().db_outage_seconds
    status, parent_id = retrying(
        lambda: _finish(job_id, token, target, fields), patience=patience, what=f"ending job {job_id}"
    )
    if parent_id is not None and status == JobStatus.SUCCEEDED:
        _shard_the_rest(parent_id)
    if parent_id is not None and status.finished:
        _advance_sweep(parent_id)
    return status


def _trial_reports(claim: Claim) -> Callable[[int, Mapping[str, float]], None] | None:
    """A child job's epoch metrics go to its sweep's study, if it is a sweep's trial (`cnnq.sweeps`)."""
    if claim.parent_id is None:
        return None
    from cnnq.sweeps.pruning import TrialReports

    return TrialReports(claim.job_id)


def _advance_sweep(parent_id: str) -> None:
    """A sweep's trial has ended: tell its study and queue the next trials (a no-op for a bulk shard).
    If this fails, the recovery pass tops the sweep up."""
    from cnnq.sweeps.trials import WAIT_FOR_LEASE_SECONDS, advance_sweep

    try:
        advance_sweep(parent_id, wait=WAIT_FOR_LEASE_SECONDS)
    except Exception as error:
        log.warning("sweep %s: advancing it failed (%s); the recovery pass tops it up", parent_id, error)


def _shard_the_rest(parent_id: str) -> None:
    """The first shard of an auto-sized bulk job has SUCCEEDED: shard the rest now (a no-op for any
    other shard). If this fails, the recovery pass does it."""
    from cnnq.lifecycle.auto_shards import shard_the_rest

    try:
        shard_the_rest(parent_id)
    except Exception as error:
        log.warning("bulk job %s: sharding the rest failed (%s); the recovery pass does it", parent_id, error)


def _finish(
    job_id: str, token: int, target: JobStatus, fields: dict[str, Any]
) -> tuple[JobStatus, str | None]:
    """The status the job ended in, and its bulk parent (if it has one)."""
    fields = dict(fields)
    with session_scope() as session:
        try:
            job = transition(
                session,
                job_id,
                target,
                only_if=(Job.claims == token) & (Job.status == JobStatus.RUNNING),
                **fields,
            )
        except IllegalTransition as refused:
            log.warning(
                "job %s: claim %d ended as %s, but the job is %s", job_id, token, target, refused.current
            )
            return refused.current, None
        line = fields["message"] if target == JobStatus.QUEUED else target.lower()
        if fields.get("error_message"):
            line += f": {fields['error_type']}: {fields['error_message']}"
        append_log(session, job_id, [line])
        if job.parent_id is not None:
            settle_parent(session, job.parent_id)
        return job.status, job.parent_id


def give_back(job_id: str, token: int, message: str, *, spend: bool) -> JobStatus:
    """Put the job of claim `token` back in the queue to resume from its checkpoint: after a graceful stop
    (`spend=False`: the attempt is given back) or a stall (`spend=True`). The recovery pass sends it."""
    fields: dict[str, Any] = {"message": message, "sent_at": None, "worker": None}
    if not spend:
        fields["attempts"] = Job.attempts - 1
    status = finish_claim(job_id, token, target=JobStatus.QUEUED, **fields)
    log.info("job %s: %s", job_id, message)
    return status


def failure_fields(error: BaseException) -> dict[str, Any]:
    """The error columns of a failed job: type, message, the last lines of the traceback."""
    lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
    kept = lines[-TRACEBACK_LINES:]
    while len(kept) > 1 and kept[0].startswith(" ") and not kept[0].lstrip().startswith("File "):
        kept.pop(0)  # a cut frame's source or `^^^^` line, orphaned from its `File ...` line
    if len(kept) < len(lines) and kept[0].startswith(" "):
        kept.insert(0, "Traceback (most recent call last), its last frames:")
    error_type = type(error).__name__
    message = str(error) or _where_raised(error)
    if error_type == "OutOfMemoryError" or "CUDA out of memory" in message:
        message = (
            f"the GPU ran out of memory; submit again with a smaller --batch-size ({message.splitlines()[0]})"
        )
    return {
        "error_type": error_type,
        "error_message": message,
        "error_traceback": "\n".join(kept),
        "message": f"failed: {error_type}",
    }


def _where_raised(error: BaseException) -> str:
    """The message of an exception raised without one (a bare `assert`): where it was raised, and the
    source line, so that a failed job's headline never reads `AssertionError: AssertionError`."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return f"{type(error).__name__} raised without a message"
    last = frames[-1]
    code = f" (`{last.line}`)" if last.line else ""
    return f"raised without a message at {Path(last.filename).name}, line {last.lineno}{code}"


def _device_of(requested: str) -> str:
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0]
        return f"cuda:{visible}" if visible else "cuda:0"
    return "cpu" if requested == "auto" else "cuda"
