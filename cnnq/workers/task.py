"""The Celery task: a thin wrapper that runs one job in the worker's job process and watches over it.

While the job process runs, the worker's heartbeat thread beats for the job, and this loop looks at the
job's row about once a second (on the database's clock) and acts on what it sees, always fenced by the
claim the job process took:

- a cancel request the job ignores for `CNNQ_CANCEL_GRACE_SECONDS`: kill it, CANCELLED;
- no report from the job for `CNNQ_STALL_SECONDS` (a deadlock, a hung device): kill it, re-queued;
- past the job's `--timeout`: kill it, FAILED (`Timeout`);
- superseded (its job re-queued and claimed elsewhere) and still running after the grace: kill it;
- the worker is stopping (SIGTERM, SIGINT): ask the job to stop at its next batch (it goes back to the
  queue, its attempt not spent); a second signal kills it, and the job is re-queued all the same.

A database outage never abandons a live job process: the loop just looks again later.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass

from sqlalchemy import select, update

from cnnq.db.clock import db_ago, read_db_now
from cnnq.db.orm import Job
from cnnq.db.records import append_log
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.lifecycle.claim import EXIT_DATABASE_LOST, finish_claim, give_back
from cnnq.settings import get_settings
from cnnq.workers.heartbeat import Heartbeat
from cnnq.workers.job_process import JobProcess, start_job_process

log = logging.getLogger(__name__)

_LOOK_EVERY_SECONDS = 1.0
_EXIT_GRACE_SECONDS = 30.0
"""How long a killed job process may take to be reaped before the worker goes on without it."""


class WorkerState:
    """What the task needs to know about the worker process it runs in (set when the worker is ready)."""

    name: str = "unregistered"
    heartbeat: Heartbeat | None = None
    standby: JobProcess | None = None
    """The process the next job will run in: the last job's, reused, or a fresh one already importing
    torch (see `cnnq.workers.job_process`)."""
    running: JobProcess | None = None
    stop_signals: int = 0
    """SIGTERM/SIGINT received: the first asks the running job to stop, the second kills it."""

    successor: JobProcess | None = None
    """A fresh process importing torch, to take over from a worn-out standby once it is ready."""

    @classmethod
    def prepare_standby(cls) -> None:
        if get_settings().standby_process and cls.standby is None and not cls.stop_signals:
            cls.standby, cls.successor = cls.successor or JobProcess(cls.name), None

    @classmethod
    def prepare_successor(cls) -> None:
        if get_settings().standby_process and cls.successor is None and not cls.stop_signals:
            cls.successor = JobProcess(cls.name)

    @classmethod
    def next_process(cls) -> JobProcess | None:
        """The process to run the next job in: the standby, or its successor once that is ready."""
        if cls.successor is not None and (cls.standby is None or cls.successor.is_ready()):
            if cls.standby is not None:
                log.info(
                    "replacing job process %s: it ran its %d jobs", cls.standby.process.pid, cls.standby.jobs
                )
                cls.standby.discard()
            cls.standby, cls.successor = cls.successor, None
        ready, cls.standby = cls.standby, None
        return ready

    @classmethod
    def keep_or_replace(cls, job: JobProcess) -> None:
        """After a job: reuse its process for the next one while it is fit, else start a fresh one."""
        settings = get_settings()
        why = job.unfit_reason(settings.job_process_max_mb)
        if not settings.standby_process:
            why = why or "CNNQ_STANDBY_PROCESS is off"
        if why is None and not cls.stop_signals:
            cls.standby = job
            if job.worn_out(settings.job_process_max_jobs):
                cls.prepare_successor()
            return
        if job.process.is_alive():
            log.info("replacing job process %s: %s", job.process.pid, why or "its worker is stopping")
            job.discard()
        cls.prepare_standby()

    @classmethod
    def drop_standby(cls) -> None:
        for process in (cls.standby, cls.successor):
            if process is not None:
                process.discard()
        cls.standby = cls.successor = None

    @classmethod
    def on_stop_signal(cls) -> None:
        """From the signal handler: pass the stop on to the running job (SIGTERM, then SIGKILL)."""
        cls.stop_signals += 1
        if cls.running is not None:
            cls.running.signal(signal.SIGTERM if cls.stop_signals == 1 else signal.SIGKILL)


def run_job_task(job_id: str) -> None:
    if WorkerState.stop_signals:
        _unsend(job_id, "this worker is stopping")
        return
    try:
        job = start_job_process(job_id, WorkerState.name, WorkerState.next_process())
    except Exception as error:  # no process: the job stays queued, and is sent again
        log.exception("job %s: could not start its process", job_id)
        _unsend(job_id, f"could not start a job process ({type(error).__name__})")
        return
    WorkerState.running = job
    if WorkerState.heartbeat is not None:
        WorkerState.heartbeat.job_id = job_id
    if job.worn_out(get_settings().job_process_max_jobs):
        WorkerState.prepare_successor()  # it imports while this job runs
    try:
        verdict = _watch(job, job_id)
    except BaseException:  # the task itself is being torn down: take the job with it, re-queued
        with contextlib.suppress(Exception):
            _settle(job, job_id, _kill(job, "interrupted", "re-queued: its worker stopped"))
        raise
    finally:
        WorkerState.running = None
        if WorkerState.heartbeat is not None:
            WorkerState.heartbeat.job_id = None
    _settle(job, job_id, verdict)
    WorkerState.keep_or_replace(job)


@dataclass(frozen=True)
class _Verdict:
    """Why the worker stopped a job process (None: it ended by itself)."""

    reason: str | None
    message: str = ""


@dataclass(frozen=True)
class _Look:
    ours: bool
    cancel_requested: bool
    stalled: bool
    timed_out: bool
    timeout: float | None


def _watch(job: JobProcess, job_id: str) -> _Verdict:
    """Wait for the job process, killing it when the row or the worker's signals say so."""
    settings = get_settings()
    grace = max(settings.cancel_grace_seconds, 10 * settings.cancel_poll_seconds)
    cancel_seen = superseded_seen = stop_seen_at = None
    signals_seen = 0
    while not job.done():
        job.wait(_LOOK_EVERY_SECONDS)
        if job.done():
            break
        now = time.monotonic()
        if WorkerState.stop_signals > signals_seen:
            signals_seen = WorkerState.stop_signals
            stop_seen_at = stop_seen_at or now
            if signals_seen > 1:  # the handler killed it; the job goes back to the queue all the same
                return _kill(job, "interrupted", "re-queued: its worker was stopped at once")
        if stop_seen_at is not None and now - stop_seen_at > grace:
            return _kill(
                job, "interrupted", f"re-queued: its worker stopped; the job ignored it {grace:.0f}s"
            )
        token = job.claim_token()
        if token is None:
            if stop_seen_at is not None:  # still starting, no job claimed: nothing to save
                return _kill(job, "interrupted")
            continue
        look = _look(job_id, token)
        if look is None:
            continue  # the database is out: never abandon a live job process, look again later
        if not look.ours:
            superseded_seen = superseded_seen or now
            if now - superseded_seen > grace:
                return _kill(job, "superseded")
        elif look.timed_out:
            return _kill(job, "timeout", f"ran past its --timeout of {look.timeout:g}s; stopped")
        elif look.stalled:
            return _kill(
                job, "stalled", f"re-queued: no progress for {settings.stall_seconds:g}s (CNNQ_STALL_SECONDS)"
            )
        elif look.cancel_requested:
            cancel_seen = cancel_seen or now
            if now - cancel_seen > grace:
                return _kill(
                    job, "cancelled", f"cancelled: stopped after ignoring the request for {grace:.0f}s"
                )
    if WorkerState.stop_signals > 1:  # killed by the second signal's handler before this loop saw it
        return _Verdict("interrupted", "re-queued: its worker was stopped at once")
    return _Verdict(None)


def _kill(job: JobProcess, reason: str, message: str = "") -> _Verdict:
    job.signal(signal.SIGKILL)
    job.process.join(timeout=_EXIT_GRACE_SECONDS)
    if job.process.is_alive():
        log.error("job process %s did not die within %.0fs of SIGKILL", job.process.pid, _EXIT_GRACE_SECONDS)
    return _Verdict(reason, message)


def _look(job_id: str, token: int) -> _Look | None:
    """The row's verdict on the run holding claim `token`, on the database's clock; None if unreadable."""
    stall_after = get_settings().stall_seconds
    try:
        with session_scope() as session:
            ours, cancel_requested, stalled, claimed_at, spec = session.execute(
                select(
                    (Job.claims == token) & (Job.status == JobStatus.RUNNING),
                    Job.cancel_requested,
                    Job.progress_at < db_ago(stall_after),
                    Job.claimed_at,
                    Job.spec,
                ).where(Job.id == job_id)
            ).one()
            now = read_db_now(session)
    except Exception as error:
        log.warning("job %s: cannot read its row (%s); looking again", job_id, error)
        return None
    timeout = (spec or {}).get("timeout")
    timed_out = bool(timeout and claimed_at is not None and (now - claimed_at).total_seconds() > timeout)
    return _Look(bool(ours), bool(cancel_requested), bool(stalled), timed_out, timeout)


def _settle(job: JobProcess, job_id: str, verdict: _Verdict) -> None:
    """Record how the job process ended when it could not record it itself."""
    token, code = job.claim_token(), job.process.exitcode
    if verdict.reason is None and job.ended:  # it ended the job and recorded how itself
        return
    if token is None:
        if code:
            log.error(
                "job %s: its process exited (%s) before claiming it; it will be sent again", job_id, code
            )
            _unsend(job_id, f"its job process exited ({code}) before claiming it")
        return
    if verdict.reason == "interrupted":
        give_back(job_id, token, verdict.message, spend=False)
    elif verdict.reason == "stalled":
        give_back(job_id, token, verdict.message, spend=True)
    elif verdict.reason == "timeout":
        finish_claim(
            job_id,
            token,
            target=JobStatus.FAILED,
            error_type="Timeout",
            error_message=verdict.message,
            message="failed: Timeout",
        )
    elif verdict.reason == "cancelled":
        finish_claim(job_id, token, target=JobStatus.CANCELLED, message=verdict.message)
    elif verdict.reason == "superseded" or not code:
        return
    elif code == EXIT_DATABASE_LOST:
        try:
            give_back(job_id, token, "re-queued: the database was out too long", spend=True)
        except Exception:  # still out: the job's heartbeat stops, and a reaper re-queues it later
            log.exception("job %s: could not re-queue it; a reaper will", job_id)
    else:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        status = finish_claim(
            job_id,
            token,
            target=JobStatus.FAILED,
            error_type="JobProcessDied",
            error_message=f"the job process {how}; out of memory? see `cnnq logs {job_id}`",
            message="failed: the job process died",
        )
        log.error("job %s: its process %s (the job is %s)", job_id, how, status)


def _unsend(job_id: str, why: str) -> None:
    """Leave a queued job for the recovery pass to send again (its message is being acknowledged here)."""
    try:
        with session_scope() as session:
            done = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                .values(sent_at=None)
                .execution_options(synchronize_session=False)
            ).rowcount
            if done:
                append_log(session, job_id, [f"not started on {WorkerState.name}: {why}; sent again"])
    except Exception:
        log.exception("job %s: could not mark it for sending again; the recovery pass will find it", job_id)
