"""The recovery pass: what every worker's heartbeat thread does for the whole cluster, every beat.

The SQL row is the outbox; Redis only carries a nudge. So the recovery pass, on the database's clock:

1. re-queues running jobs whose worker stopped beating (`CNNQ_LOST_AFTER_SECONDS`); a `cnnq run` job,
   which no worker can take over, is failed instead;
2. sends the message of every queued job that has none yet (just re-queued, given back by a stopping
   worker, or whose send failed);
3. sends again the message of a queued job that nobody claimed for `CNNQ_REQUEUE_AFTER_SECONDS` and whose
   message waits in no queue: it was lost with a worker that took it and died (Redis would restore it only
   after the visibility timeout, a week), or with a Redis that lost its data;
4. settles bulk parents whose shards have all ended, and shards the rest of an auto-sized bulk job whose
   first shard SUCCEEDED if the process that ended it died before it could (`cnnq.lifecycle.auto_shards`);
5. tops up hyperparameter sweeps that look stuck: trials that ended unseen, room and no trial waiting
   (`cnnq.sweeps.trials.top_up_sweeps`).

Every step is a conditional UPDATE that one recovery pass wins, and delivering a message twice is harmless
(a claim is conditional too), so any number of workers may recover at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import aliased

from cnnq.db.clock import db_ago
from cnnq.db.jobs import lost_jobs, stale, transition
from cnnq.db.orm import Job
from cnnq.db.session import session_scope
from cnnq.db.status import FINISHED, IllegalTransition, JobStatus
from cnnq.lifecycle.auto_shards import shard_the_rest
from cnnq.lifecycle.broker import waiting_job_ids
from cnnq.lifecycle.bulk import settle_parent
from cnnq.lifecycle.outbox import send_each
from cnnq.lifecycle.queues import LOCAL_QUEUE
from cnnq.settings import get_settings
from cnnq.sweeps.trials import top_up_sweeps

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    requeued: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    sharded: list[str] = field(default_factory=list)
    trials: list[str] = field(default_factory=list)


class Recovery:
    """One process's recovery pass. `reap=False` skips step 1 (a worker that only just regained the database
    must not judge others' heartbeats, which were as cut off as its own)."""

    def __init__(self) -> None:
        self._last_resend = 0.0
        self._missing: dict[str, float] = {}
        """Queued jobs whose message this process found in no queue, and since when (its own clock:
        only durations count). A message a live worker just took leaves the queue seconds before
        its job is claimed; only one gone for `CNNQ_REQUEUE_AFTER_SECONDS` is lost."""

    def run(self, *, reap: bool = True) -> RecoveryReport:
        report = RecoveryReport()
        settings = get_settings()
        if reap:
            report.requeued = reap_lost_jobs()
        report.sent = send_unsent()
        report.trials = top_up_sweeps()
        now = time.monotonic()
        if now - self._last_resend >= min(settings.requeue_after_seconds / 4, 15.0):
            self._last_resend = now
            report.resent = self.resend_stranded()
            report.sharded = settle_bulk_parents()
        return report

    def resend_stranded(self) -> list[str]:
        """Step 3: send again each queued job sent long ago whose message has waited in no queue for
        `CNNQ_REQUEUE_AFTER_SECONDS`."""
        patience = get_settings().requeue_after_seconds
        overdue = Job.sent_at < db_ago(patience)
        with session_scope() as session:
            rows = session.execute(
                select(Job.id, Job.queue, Job.priority)
                .where(_leaf_queued(), overdue)
                .order_by(Job.created_at)
            ).all()
        if not rows:
            self._missing.clear()
            return []
        try:
            waiting = waiting_job_ids(sorted({queue for _, queue, _ in rows}))
        except Exception as error:  # Redis is out: nothing can be sent anyway
            log.warning("cannot read the queues (%s); stranded jobs wait for the next pass", error)
            return []
        now = time.monotonic()
        missing = {row[0]: self._missing.get(row[0], now) for row in rows if row[0] not in waiting}
        self._missing = missing
        stranded = [row for row in rows if row[0] in missing and now - missing[row[0]] >= patience]
        sent = send_each(stranded, overdue)
        for job_id in sent:
            self._missing.pop(job_id, None)
            log.warning("job %s: its message was lost (no queue holds it); sent again", job_id)
        return sent


def reap_lost_jobs() -> list[str]:
    """Step 1: re-queue (or, for `cnnq run` jobs, fail) each running job whose worker stopped beating."""
    lost_after = timedelta(seconds=get_settings().lost_after_seconds)
    with session_scope() as session:
        lost = [(job.id, job.worker, job.queue, job.claims) for job in lost_jobs(session, lost_after)]
    requeued = []
    for job_id, worker, queue, token in lost:
        still_lost = stale(lost_after) & (Job.claims == token)
        try:
            with session_scope() as session:
                if queue == LOCAL_QUEUE:
                    transition(
                        session,
                        job_id,
                        JobStatus.FAILED,
                        only_if=still_lost,
                        error_type="WorkerLost",
                        error_message=f"the `cnnq run` process {worker} stopped beating",
                    )
                    continue
                transition(
                    session,
                    job_id,
                    JobStatus.QUEUED,
                    only_if=still_lost,
                    sent_at=None,
                    message=f"re-queued: worker {worker} stopped beating",
                )
        except IllegalTransition:
            continue  # another recovery pass, or the job itself, got there first
        log.warning("job %s: worker %s stopped beating; re-queued", job_id, worker)
        requeued.append(job_id)
    return requeued


def _leaf_queued():  # type: ignore[no-untyped-def]
    """Queued jobs that a worker runs: not `cnnq run` jobs, not bulk parents (their shards run)."""
    child = aliased(Job)
    return (
        (Job.status == JobStatus.QUEUED)
        & (Job.queue != LOCAL_QUEUE)
        & ~exists().where(child.parent_id == Job.id)
    )


def send_unsent() -> list[str]:
    """Step 2: send each queued job whose message is yet to go."""
    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.queue, Job.priority)
            .where(_leaf_queued(), Job.sent_at.is_(None))
            .order_by(Job.created_at)
        ).all()
    return send_each(rows, Job.sent_at.is_(None))


def settle_bulk_parents() -> list[str]:
    """Step 4: bring unfinished bulk parents up to date with their shards (and end those whose shards
    have all ended, if the last shard's worker died before it could); shard and send the rest of those
    whose first shard SUCCEEDED and whose rest nobody sharded yet. Returns the new shards sent."""
    child = aliased(Job)
    with session_scope() as session:
        parents = session.scalars(
            select(Job.id).where(Job.status.not_in(FINISHED), exists().where(child.parent_id == Job.id))
        ).all()
    sharded = []
    for parent_id in parents:
        with session_scope() as session:
            settle_parent(session, parent_id)
        sharded += shard_the_rest(parent_id)
    return sharded
