"""The dashboard's two writes, through the same functions as `cnnq cancel` and `cnnq retry`."""

from __future__ import annotations

from cnnq.db.jobs import request_cancel
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.workers.submit import retry_job

__all__ = ["cancel_job", "retry_job"]


def cancel_job(job_id: str) -> JobStatus:
    """Ask a job to stop; a queued one is cancelled at once. Returns its status afterwards."""
    with session_scope() as session:
        return request_cancel(session, job_id).status
