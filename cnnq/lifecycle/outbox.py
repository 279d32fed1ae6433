"""Sending queued jobs' messages from their rows: the SQL row is the outbox.

A message is sent only by whoever wins the row's stamp (`sent_at`, set by a conditional UPDATE), so two
senders (a recovery pass and the job process that just sharded a bulk job) never both send it; a send that
fails clears the stamp again for the next recovery pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import ColumnElement, update

from cnnq.db.clock import db_now
from cnnq.db.orm import Job
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.lifecycle.broker import send_message

log = logging.getLogger(__name__)


def send_each(rows: Iterable[tuple[str, str, int]], unsent: ColumnElement[bool]) -> list[str]:
    """Send the message of each (job id, queue, priority) still queued and `unsent`, stamping `sent_at`
    first; returns the ids sent. Stops at the first failed send."""
    sent = []
    for job_id, queue, priority in rows:
        with session_scope() as session:
            won = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.QUEUED, unsent)
                .values(sent_at=db_now())
                .execution_options(synchronize_session=False)
            ).rowcount
        if not won:
            continue
        try:
            send_message(job_id, queue, priority)
        except Exception as error:
            with session_scope() as session:  # let the next recovery pass try again
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                    .values(sent_at=None)
                    .execution_options(synchronize_session=False)
                )
            log.warning(
                "job %s: its message could not be sent (%s); the next recovery pass tries again",
                job_id,
                error,
            )
            break
        sent.append(job_id)
    return sent
