"""Re-queue running jobs whose worker stopped beating; every worker's heartbeat thread runs this.

The conditional transition lets exactly one reaper win per lost job; the winner sends a fresh message.
(The lost worker's own message stays unacknowledged in Redis until the visibility timeout; by the time
Redis redelivers it the job has finished, so that delivery does nothing.)
"""

from __future__ import annotations

import logging
from datetime import timedelta

from cnnq.db.jobs import lost_jobs, transition
from cnnq.db.session import session_scope
from cnnq.db.status import IllegalTransition, JobStatus
from cnnq.db.tables import Job, utcnow
from cnnq.settings import get_settings
from cnnq.workers.queues import LOCAL_QUEUE

log = logging.getLogger(__name__)


def reap_lost_jobs() -> list[str]:
    """Re-queue (or, for `cnnq run` jobs, fail) each lost job; returns the ids this call re-queued."""
    from cnnq.workers.submit import send_job_message

    lost_after = timedelta(seconds=get_settings().lost_after_seconds)
    with session_scope() as session:
        lost = [(job.id, job.worker, job.queue, job.priority) for job in lost_jobs(session, lost_after)]
    requeued = []
    for job_id, worker, queue, priority in lost:
        stale = Job.heartbeat_at < utcnow() - lost_after
        try:
            with session_scope() as session:
                if queue == LOCAL_QUEUE:
                    transition(
                        session,
                        job_id,
                        JobStatus.FAILED,
                        only_if=stale,
                        error_type="WorkerLost",
                        error_message=f"the `cnnq run` process {worker} stopped beating",
                    )
                    continue
                transition(
                    session,
                    job_id,
                    JobStatus.QUEUED,
                    only_if=stale,
                    message=f"re-queued: worker {worker} stopped beating",
                )
        except IllegalTransition:
            continue  # another reaper, or the job itself, got there first
        try:
            send_job_message(job_id, queue, priority)
        except Exception:
            log.exception("job %s was re-queued but its message could not be sent", job_id)
            continue
        log.warning("job %s: worker %s stopped beating; re-queued on %s", job_id, worker, queue)
        requeued.append(job_id)
    return requeued
