"""Submitting jobs: a job is either recorded and queued, or neither.

The rows are committed first (the SQL row is the outbox), then the messages sent. If the broker cannot
take them, the rows are deleted again and the submit fails with one line; if the submitting process
dies between the two, the recovery pass sends the messages (`cnnq.lifecycle.recovery`). A database or a
broker that does not answer is `ServiceUnavailable`: one line naming it, exit 1, nothing queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert

from cnnq.db.clock import db_now
from cnnq.db.jobs import create_job, get_job
from cnnq.db.outage import refused_while_out
from cnnq.db.session import connection_scope
from cnnq.db.status import JobStatus
from cnnq.db.tables import jobs, unsharded_inputs
from cnnq.errors import ServiceUnavailable
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec, parse_spec
from cnnq.lifecycle.broker import require_broker, send_message
from cnnq.lifecycle.bulk import BulkPlan, plan_shards, resolve_resume
from cnnq.lifecycle.queues import LOCAL_QUEUE, queue_for
from cnnq.settings import get_settings, mask_url

AnySpec = TrainSpec | EvalSpec | InferSpec


@dataclass(frozen=True)
class Placement:
    """Where a job goes; `queue=None` picks it from the spec's device."""

    queue: str | None = None
    priority: int = 0


def submit_job(spec: AnySpec, placement: Placement, *, message: str | None = None) -> str:
    """Record and queue a job; returns its id. A bulk inference job becomes a parent plus its shards."""
    queue = queue_for(spec.device, placement.queue)
    require_broker()
    with refused_while_out():
        job_id, leaves = _record(spec, queue, placement.priority, message)
    try:
        for leaf in leaves:
            send_message(leaf, queue, placement.priority)
    except Exception as error:
        _forget(job_id, leaves)
        raise ServiceUnavailable(
            f"could not queue the job on {mask_url(get_settings().broker_url)} "
            f"({type(error).__name__}); nothing was queued"
        ) from None
    return job_id


def _record(spec: AnySpec, queue: str, priority: int, message: str | None) -> tuple[str, list[str]]:
    """Commit the job's rows, already stamped as sent; returns its id and the ids that get messages."""
    with connection_scope() as connection:
        plan = None
        if isinstance(spec, InferSpec):
            spec = resolve_resume(connection, spec)
            plan = plan_shards(connection, spec)
        job_id = create_job(
            connection,
            kind=spec.kind,
            spec=spec.model_dump(mode="json"),
            queue=queue,
            priority=priority,
            message=message or (_bulk_message(plan) if plan else None),
            sent_at=db_now() if plan is None else None,
        ).id
        if plan is None:
            return job_id, [job_id]
        leaves = [
            create_job(
                connection,
                kind=spec.kind,
                spec=spec.model_copy(update={"inputs": paths}).model_dump(mode="json"),
                queue=queue,
                priority=priority,
                parent_id=job_id,
                job_id=f"{job_id}.{index:04d}",
                sent_at=db_now(),
            ).id
            for index, paths in enumerate(plan.shards, start=1)
        ]
        if plan.rest:
            connection.execute(insert(unsharded_inputs).values(parent_id=job_id, inputs=plan.rest))
        return job_id, leaves


def _bulk_message(plan: BulkPlan) -> str:
    if not plan.rest:
        return f"bulk job of {len(plan.shards)} shards"
    return (
        f"bulk job: a first shard of {len(plan.shards[0])} inputs measures the speed, "
        f"then the other {len(plan.rest)} are sharded by time"
    )


def _forget(job_id: str, leaves: list[str]) -> None:
    """Delete the rows of a submit whose messages could not all be sent (best effort: if the database
    is out too, the recovery pass will send them once both are back)."""
    try:
        with connection_scope() as connection:
            connection.execute(
                delete(jobs).where(
                    jobs.c.id.in_(leaves), jobs.c.status == JobStatus.QUEUED, jobs.c.claims == 0
                )
            )
            connection.execute(delete(jobs).where(jobs.c.id == job_id, jobs.c.claims == 0))
    except Exception:
        pass


def retry_job(job_id: str) -> str:
    """A new job with the same spec, queue and priority as `job_id`; returns the new id."""
    with connection_scope() as connection:
        job = get_job(connection, job_id)
        kind, stored, queue, priority, parent_id = job.kind, job.spec, job.queue, job.priority, job.parent_id
    if kind == "sweep":
        return _retry_sweep(stored, queue, priority)
    spec = parse_spec(stored)
    if isinstance(spec, InferSpec) and parent_id is not None:
        # A shard retried on its own still fills its bulk job's predictions.
        spec = spec.model_copy(update={"resume": spec.resume or parent_id})
    if queue == LOCAL_QUEUE:
        queue = None
    return submit_job(spec, Placement(queue=queue, priority=priority), message=f"retry of {job_id}")


def _retry_sweep(spec: dict[str, Any], queue: str, priority: int) -> str:
    """A new sweep with the same spec, with a study of its own."""
    from cnnq.sweeps.spec import SweepSpec
    from cnnq.sweeps.submit import submit_sweep

    return submit_sweep(SweepSpec.model_validate(spec), queue, priority)
