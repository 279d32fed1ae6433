"""The beat of a worker process: its own row, the job it runs, and reaping jobs whose worker died."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import update

from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.tables import Job, utcnow
from cnnq.db.workers import beat_worker
from cnnq.settings import get_settings
from cnnq.workers.reaper import reap_lost_jobs

log = logging.getLogger(__name__)


def beat_job(job_id: str, worker: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.worker == worker)
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )


class Heartbeat(threading.Thread):
    """Every `heartbeat_seconds`: beat the worker row (if registered) and the current job, then reap."""

    def __init__(self, worker: str, *, registered: bool, reap: bool) -> None:
        super().__init__(name="cnnq-heartbeat", daemon=True)
        self.worker = worker
        self.registered = registered
        self.reap = reap
        self.job_id: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = get_settings().heartbeat_seconds
        while not self._stop_event.wait(interval):
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat failed; trying again in %.1fs", interval)

    def beat(self) -> None:
        job_id = self.job_id
        if job_id is not None:
            beat_job(job_id, self.worker)
        if self.registered:
            with session_scope() as session:
                beat_worker(session, self.worker)
        if self.reap:
            reap_lost_jobs()

    def stop(self) -> None:
        self._stop_event.set()
