"""`--shard-size auto`: a bulk job's shards sized by time, not only by count.

Submit cuts only a first shard (`cnnq.lifecycle.bulk.first_shard_size`) and keeps the job's other inputs
in its `unsharded_inputs` row. Once that shard has SUCCEEDED, the rest are cut into shards of about
`CNNQ_SHARD_SECONDS` of work each at the speed the first one scored at, so that a shard's start-up (job
process, model, engine, DataLoader workers) stays a few percent of its work; but into at least one shard
per live worker of the job's queue, in equal rounds, so that every worker gets the same share.

The job process that ends the first shard shards the rest right after; if it dies first, the recovery
pass does. Exactly one planner does it: it locks the parent's row (a conditional UPDATE that only an
unfinished, uncancelled parent matches; `request_cancel` takes the same lock first) and deletes the
unsharded row, in one transaction with the new shards' rows, and a planner that finds the row gone does
nothing. The shards are committed without `sent_at` and then sent through the outbox, so a planner that
dies between the two leaves them to the next recovery pass, which sends them.
"""

from __future__ import annotations

import logging
import math

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cnnq.db.clock import db_ago
from cnnq.db.jobs import children_of, create_job, update_job
from cnnq.db.orm import Job, Prediction, UnshardedInputs, Worker
from cnnq.db.records import append_log
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.jobs.spec import shard_inputs
from cnnq.lifecycle.outbox import send_each
from cnnq.settings import get_settings

log = logging.getLogger(__name__)

MAX_SHARD = 50_000
"""The most inputs one auto-sized shard holds, however fast the model: a shard's inputs travel in its
row's spec, and a shard delivered again re-reads which of them are done."""


def shard_the_rest(parent_id: str) -> list[str]:
    """Shard the rest of bulk job `parent_id` if its first shard has SUCCEEDED and send the new shards;
    returns their ids ([]: nothing to shard, or another planner did it)."""
    with session_scope() as session:
        planned = plan_rest(session, parent_id)
    return send_each(planned, Job.sent_at.is_(None))


def plan_rest(session: Session, parent_id: str) -> list[tuple[str, str, int]]:
    """In `session`: the rows of the rest's shards, unsent, and the unsharded row deleted; returns each
    new shard's (id, queue, priority), to send once the session has committed."""
    waiting = UnshardedInputs.parent_id == parent_id
    if session.scalar(select(UnshardedInputs.parent_id).where(waiting)) is None:
        return []
    children = children_of(session, parent_id)
    if not children or any(child.status != JobStatus.SUCCEEDED for child in children):
        return []  # the first shard has not ended yet, or it did not succeed: `settle_parent` ends the job
    locked = session.execute(
        update(Job)
        .where(
            Job.id == parent_id,
            Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
            Job.cancel_requested.is_(False),
        )
        .values(progress=Job.progress)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not locked:
        return []
    rest = session.scalar(select(UnshardedInputs.inputs).where(waiting))
    taken = session.execute(delete(UnshardedInputs).where(waiting)).rowcount
    if rest is None or not taken:
        return []  # another planner sharded them while this one waited for the lock

    parent = session.get(Job, parent_id)
    assert parent is not None
    first = children[0]
    settings = get_settings()
    speed = measured_speed(session, first)
    workers = live_workers(session, parent.queue)
    batch = int(first.spec.get("batch_size", 1))
    count = shard_count(len(rest), speed, workers, settings.shard_seconds, batch)
    bounds = [round(index * len(rest) / count) for index in range(count + 1)]
    shards = [
        create_job(
            session,
            kind=parent.kind,
            spec={**first.spec, "inputs": rest[bounds[index] : bounds[index + 1]]},
            queue=parent.queue,
            priority=parent.priority,
            parent_id=parent_id,
            job_id=f"{parent_id}.{len(children) + index + 1:04d}",
        )
        for index in range(count)
    ]
    size = math.ceil(len(rest) / count)
    line = (
        f"the first shard scored {_speed_text(speed)}; the other {len(rest)} inputs go in {count} shards "
        f"of {size} or fewer ({_seconds_text(size, speed)} each; CNNQ_SHARD_SECONDS="
        f"{settings.shard_seconds:g}, {workers} live worker{'s' if workers != 1 else ''})"
    )
    update_job(session, parent_id, message=line)
    append_log(session, parent_id, [line])
    log.info("bulk job %s: %s", parent_id, line)
    return [(shard.id, shard.queue, shard.priority) for shard in shards]


def shard_count(inputs: int, per_second: float | None, workers: int, seconds: float, smallest: int) -> int:
    """Shards for `inputs` inputs scored at `per_second` per worker: about `seconds` of work each, at
    least one per worker and a multiple of the workers (equal shares), none over `MAX_SHARD` inputs, and
    none under `smallest` inputs (a batch) unless a single shard is all there is."""
    workers = max(1, workers)
    count = math.ceil(inputs / max(1.0, per_second * seconds)) if per_second else 1
    count = math.ceil(max(count, workers) / workers) * workers
    count = max(count, math.ceil(inputs / MAX_SHARD))
    return max(1, min(count, math.ceil(inputs / max(1, smallest)), inputs))


def measured_speed(session: Session, shard: Job) -> float | None:
    """Inputs per second that `shard` scored at, start-up left out: its rows after its first batch's,
    over the time between its first and last batch's inserts (one job process's clock). A shard of one
    batch falls back to its whole run, start-up included; None when neither can tell."""
    mine = Prediction.job_id == shard.id
    first, last = session.execute(
        select(func.min(Prediction.time), func.max(Prediction.time)).where(mine)
    ).one()
    if first is not None and last > first:
        later = session.scalar(select(func.count()).where(mine, Prediction.time > first)) or 0
        return later / (last - first).total_seconds()
    began, ended = shard.claimed_at, shard.finished_at
    if began is not None and ended is not None and ended > began:
        return len(shard_inputs(shard.spec)) / (ended - began).total_seconds()
    return None


def live_workers(session: Session, queue: str) -> int:
    """Workers that serve `queue` and beat within `CNNQ_LOST_AFTER_SECONDS`, on the database's clock."""
    alive = db_ago(get_settings().lost_after_seconds)
    served = session.scalars(
        select(Worker.queues).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= alive)
    ).all()
    return sum(queue in (queues or ()) for queues in served)


def _speed_text(speed: float | None) -> str:
    return f"{speed:.0f} inputs/s" if speed else "at an unknown speed"


def _seconds_text(size: int, speed: float | None) -> str:
    return f"about {size / speed:.1f} s" if speed else "an unknown time"
