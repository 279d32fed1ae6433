"""Cancelling, the one way `cnnq cancel` and the dashboard both use: through the row, never a signal.

A queued job is cancelled at once; a running one is asked to stop and sees the request at its next check
(its worker kills it if it ignores the request for `CNNQ_CANCEL_GRACE_SECONDS`). A bulk job passes the
request to its shards and is settled with them; a hyperparameter sweep passes it to its trials and ends
CANCELLED once they have (`cnnq.sweeps.trials`).
"""

from __future__ import annotations

from cnnq.db.jobs import count_by_status, get_job, request_cancel
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.lifecycle.bulk import settle_parent
from cnnq.sweeps.spec import SWEEP_KIND
from cnnq.sweeps.trials import advance_sweep


def cancel_job(job_id: str) -> JobStatus:
    """Ask job `job_id` (a full id) to stop; returns its status afterwards."""
    with session_scope() as session:
        job = request_cancel(session, job_id)
        if count_by_status(session, job_id):
            settle_parent(session, job_id)
            session.refresh(job)
        status, parent_id, kind = job.status, job.parent_id, job.kind
    if kind != SWEEP_KIND:
        if parent_id is not None and status.finished:  # a sweep's trial cancelled before it ran
            advance_sweep(parent_id)  # a no-op for a bulk job's shard
        return status
    advance_sweep(job_id)
    with session_scope() as session:
        return get_job(session, job_id).status
