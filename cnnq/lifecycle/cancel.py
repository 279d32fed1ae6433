"""Cancelling, the one way `cnnq cancel` and the dashboard both use: through the row, never a signal.

A queued job is cancelled at once; a running one is asked to stop and sees the request at its next check
(its worker kills it if it ignores the request for `CNNQ_CANCEL_GRACE_SECONDS`). A bulk job passes the
request to its shards and is settled with them; a hyperparameter sweep passes it to its trials and ends
CANCELLED once they have (`cnnq.sweeps.trials`).
"""

from __future__ import annotations

from cnnq.db.jobs import count_by_status, get_job, request_cancel
from cnnq.db.session import connection_scope
from cnnq.db.status import JobStatus
from cnnq.lifecycle.bulk import settle_parent
from cnnq.sweeps.spec import SWEEP_KIND


def cancel_job(job_id: str) -> JobStatus:
    """Ask job `job_id` (a full id) to stop; returns its status afterwards."""
    with connection_scope() as connection:
        job = request_cancel(connection, job_id)
        if count_by_status(connection, job_id):
            settle_parent(connection, job_id)
            job = get_job(connection, job_id)
        status, parent_id, kind = job.status, job.parent_id, job.kind
        trial = (  # a sweep's trial cancelled before it ran (a bulk job's shard is not one)
            parent_id is not None and status.finished and get_job(connection, parent_id).kind == SWEEP_KIND
        )
    if kind != SWEEP_KIND and not trial:
        return status
    from cnnq.sweeps.trials import advance_sweep  # the ORM and Optuna's tables: only sweeps need them

    if trial:
        advance_sweep(parent_id)  # type: ignore[arg-type]
        return status
    advance_sweep(job_id)
    with connection_scope() as connection:
        return get_job(connection, job_id).status
