"""The Celery task: a thin wrapper that runs one job in a fresh process while the worker beats for it."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from multiprocessing.process import BaseProcess

from cnnq.db.jobs import is_cancel_requested, transition
from cnnq.db.records import append_log
from cnnq.db.session import session_scope
from cnnq.db.status import IllegalTransition, JobStatus
from cnnq.db.tables import Job
from cnnq.settings import get_settings
from cnnq.workers.heartbeat import Heartbeat
from cnnq.workers.job_process import JobProcess, start_job_process

log = logging.getLogger(__name__)


class WorkerState:
    """What the task needs to know about the worker process it runs in (set when the worker is ready)."""

    name: str = "unregistered"
    heartbeat: Heartbeat | None = None
    standby: JobProcess | None = None
    """The process the next job will run in, already importing torch (see `cnnq.workers.job_process`)."""

    @classmethod
    def prepare_standby(cls) -> None:
        if get_settings().standby_process and cls.standby is None:
            cls.standby = JobProcess(cls.name)

    @classmethod
    def drop_standby(cls) -> None:
        if cls.standby is not None:
            cls.standby.discard()
            cls.standby = None


def run_job_task(job_id: str) -> None:
    worker = WorkerState.name
    standby, WorkerState.standby = WorkerState.standby, None
    process = start_job_process(job_id, worker, standby)
    if WorkerState.heartbeat is not None:
        WorkerState.heartbeat.job_id = job_id
    try:
        _join(process, job_id, worker)
    finally:
        if WorkerState.heartbeat is not None:
            WorkerState.heartbeat.job_id = None
        WorkerState.prepare_standby()
    if process.exitcode:
        _record_crash(job_id, worker, process.exitcode)


def _join(process: BaseProcess, job_id: str, worker: str) -> None:
    """Wait for the job process; stop it if it ignores a cancel request for longer than the grace time."""
    settings = get_settings()
    grace = max(settings.cancel_grace_seconds, 10 * settings.cancel_poll_seconds)
    asked_at: float | None = None
    while process.is_alive():
        process.join(timeout=1.0)
        if asked_at is None:
            with session_scope() as session:
                if is_cancel_requested(session, job_id):
                    asked_at = time.monotonic()
        elif time.monotonic() - asked_at > grace and process.is_alive():
            process.kill()
            process.join()
            with session_scope() as session, contextlib.suppress(IllegalTransition):
                transition(
                    session,
                    job_id,
                    JobStatus.CANCELLED,
                    only_if=Job.worker == worker,
                    message=f"cancelled: stopped after ignoring the request for {grace:.0f}s",
                )


def _record_crash(job_id: str, worker: str, exitcode: int) -> None:
    """The job process died without recording an outcome (a crash, or killed: perhaps out of memory)."""
    how = f"killed by {signal.Signals(-exitcode).name}" if exitcode < 0 else f"exited with code {exitcode}"
    with session_scope() as session:
        try:
            transition(
                session,
                job_id,
                JobStatus.FAILED,
                # Its own job, or one it died before claiming (still QUEUED: no other delivery is coming).
                only_if=(Job.worker == worker) | ((Job.status == JobStatus.QUEUED) & (Job.attempts == 0)),
                error_type="JobProcessDied",
                error_message=f"the job process {how}; out of memory? see `cnnq logs {job_id}`",
                message="failed: the job process died",
            )
        except IllegalTransition:
            return
        append_log(session, job_id, [f"failed: the job process {how}"])
    log.error("job %s: its process %s", job_id, how)
