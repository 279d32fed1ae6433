"""Submitting jobs: a job is either recorded and queued, or neither.

The row is inserted in a transaction, the message sent, then the transaction committed; if sending
fails the row is rolled back. A message that overtakes its row's commit is handled by `execute_job`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnq.db.jobs import create_job, get_job
from cnnq.db.session import session_scope
from cnnq.errors import UserError
from cnnq.jobs.inputs import CALIBRATION_IMAGES, spread_sample
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec, parse_spec
from cnnq.settings import get_settings, mask_url
from cnnq.workers.broker import broker_problem
from cnnq.workers.bulk import plan_shards, resolve_resume
from cnnq.workers.queues import LOCAL_QUEUE, message_priority, queue_for

AnySpec = TrainSpec | EvalSpec | InferSpec


@dataclass(frozen=True)
class Placement:
    """Where a job goes; `queue=None` picks it from the spec's device."""

    queue: str | None = None
    priority: int = 0


def send_job_message(job_id: str, queue: str, priority: int) -> None:
    from cnnq.workers.celery_app import RUN_JOB_TASK, get_app

    get_app().send_task(
        RUN_JOB_TASK,
        args=[job_id],
        queue=queue,
        priority=message_priority(priority),
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
    )


def submit_job(spec: AnySpec, placement: Placement, *, message: str | None = None) -> str:
    """Record and queue a job; returns its id. A bulk inference job becomes a parent plus its shards."""
    queue = queue_for(spec.device, placement.queue)
    problem = broker_problem()
    if problem is not None:
        raise UserError(f"{problem}; nothing was queued. Start one with `cnnq up` or set CNNQ_BROKER_URL")
    with session_scope() as session:
        shards = None
        if isinstance(spec, InferSpec):
            spec = resolve_resume(session, spec)
            shards = plan_shards(session, spec)
        job = create_job(
            session,
            kind=spec.kind,
            spec=spec.model_dump(mode="json"),
            queue=queue,
            priority=placement.priority,
        )
        job.message = message
        leaves = [job.id]
        if shards is not None:
            job.message = message or f"bulk job of {len(shards)} shards"
            calibration = spread_sample([path for shard in shards for path in shard], CALIBRATION_IMAGES)
            leaves = [
                create_job(
                    session,
                    kind=spec.kind,
                    spec=spec.model_copy(
                        update={"paths": paths, "calibration_paths": calibration}
                    ).model_dump(mode="json"),
                    queue=queue,
                    priority=placement.priority,
                    parent_id=job.id,
                    job_id=f"{job.id}.{index:04d}",
                ).id
                for index, paths in enumerate(shards, start=1)
            ]
        session.flush()
        try:
            for leaf in leaves:
                send_job_message(leaf, queue, placement.priority)
        except Exception as error:
            raise UserError(
                f"could not queue the job on {mask_url(get_settings().broker_url)} "
                f"({type(error).__name__}); nothing was queued"
            ) from None
        return job.id


def retry_job(job_id: str) -> str:
    """A new job with the same spec, queue and priority as `job_id`; returns the new id."""
    with session_scope() as session:
        job = get_job(session, job_id)
        spec, queue, priority = parse_spec(job.spec), job.queue, job.priority
        if isinstance(spec, InferSpec) and job.parent_id is not None:
            # A shard retried on its own still fills its bulk job's predictions.
            spec = spec.model_copy(update={"resume": spec.resume or job.parent_id})
    if queue == LOCAL_QUEUE:
        queue = None
    return submit_job(spec, Placement(queue=queue, priority=priority), message=f"retry of {job_id}")
