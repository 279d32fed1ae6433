"""The beat of a worker process: its own row, the job it runs, and the recovery pass
(`cnnq.lifecycle.recovery`).

All on the database's clock. A worker judges others' heartbeats only after `CNNQ_LOST_AFTER_SECONDS` of
unbroken contact with the database: after an outage every heartbeat is old, and the workers that beat
them deserve the time to beat again before anyone re-queues their jobs.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import update

from cnnq.db.clock import db_now
from cnnq.db.orm import Job
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.workers import beat_worker
from cnnq.lifecycle.recovery import Recovery
from cnnq.settings import get_settings

log = logging.getLogger(__name__)


def beat_job(job_id: str, worker: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.worker == worker)
            .values(heartbeat_at=db_now())
            .execution_options(synchronize_session=False)
        )


class Heartbeat(threading.Thread):
    """Every `heartbeat_seconds`: beat the worker row (if registered) and the current job, then recover."""

    def __init__(self, worker: str, *, registered: bool, recover: bool) -> None:
        super().__init__(name="cnnq-heartbeat", daemon=True)
        self.worker = worker
        self.registered = registered
        self.recovery = Recovery() if recover else None
        self.job_id: str | None = None
        self._stop_event = threading.Event()
        self._contact_since: float | None = time.monotonic()

    def run(self) -> None:
        interval = get_settings().heartbeat_seconds
        while not self._stop_event.wait(interval):
            try:
                self.beat()
            except Exception as error:
                self._contact_since = None
                log.warning("heartbeat failed (%s); trying again in %.1fs", error, interval)

    def beat(self) -> None:
        job_id = self.job_id
        if job_id is not None:
            beat_job(job_id, self.worker)
        if self.registered:
            with session_scope() as session:
                beat_worker(session, self.worker)
        now = time.monotonic()
        self._contact_since = self._contact_since or now
        if self.recovery is not None:
            in_touch = now - self._contact_since >= get_settings().lost_after_seconds
            self.recovery.run(reap=in_touch)

    def stop(self) -> None:
        self._stop_event.set()
