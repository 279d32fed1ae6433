"""Bulk inference: one parent job, one child job per shard of inputs, predictions kept per parent.

A parent never runs itself: it is RUNNING once any shard runs and ends when all shards have ended.
Its `--output` CSV, if asked for, is written from the prediction rows by the worker that ends it, so
the path must be one that workers can write (a shared volume when they run on several hosts).
`--resume JOB` scores into JOB's predictions (its bulk id), so only the inputs JOB lacks are scored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from cnnq.atomic_file import atomic_file
from cnnq.db.jobs import (
    JobNotFound,
    bulk_decision,
    bulk_id_of,
    children_of,
    find_job,
    get_job,
    transition,
    update_job,
)
from cnnq.db.records import prediction_counts, scored_inputs
from cnnq.db.results import prediction_scope, write_predictions_csv
from cnnq.db.status import IllegalTransition, JobStatus
from cnnq.db.tables import unsharded_inputs
from cnnq.errors import UserError
from cnnq.jobs.spec import InferSpec, shard_inputs
from cnnq.sweeps.spec import SWEEP_KIND

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session


def resolve_resume(session: Connection | Session, spec: InferSpec) -> InferSpec:
    """`--resume` names an inference job (by id or prefix); store its full id."""
    if spec.resume is None:
        return spec
    try:
        resumed = find_job(session, spec.resume)
    except JobNotFound as error:
        raise UserError(f"--resume: {error}") from None
    if resumed.kind != "infer":
        raise UserError(f"--resume: job {resumed.id} is a {resumed.kind} job; name an inference job")
    return spec.model_copy(update={"resume": bulk_id_of(resumed)})


@dataclass(frozen=True)
class BulkPlan:
    """The shards a bulk job starts with, and (`--shard-size auto`) the inputs sharded after the first
    of them has measured the scoring speed (`cnnq.lifecycle.auto_shards`)."""

    shards: list[list[str]]
    rest: list[str]

    @property
    def inputs(self) -> list[str]:
        return [path for shard in self.shards for path in shard] + self.rest


FIRST_SHARD_MAX = 1000
"""The largest first shard of `--shard-size auto`. The other workers wait for it: ResNet-18 at 224 px
scores 30 to 160 images a second on one CPU core (fp32 to int8), so under 35 s; LeNet, a fraction of
a second."""

FIRST_SHARD_BATCHES = 4
"""The first shard holds at least this many batches, so that it measures a speed, not one batch."""


def first_shard_size(inputs: int, batch_size: int) -> int:
    """Inputs of an auto-sized bulk job's first shard: a twentieth of the job, at least a few batches,
    at most `FIRST_SHARD_MAX`. A job no bigger than that is not sharded."""
    return min(FIRST_SHARD_MAX, max(FIRST_SHARD_BATCHES * batch_size, inputs // 20))


def plan_shards(session: Connection | Session, spec: InferSpec) -> BulkPlan | None:
    """How a bulk job (more inputs than one shard holds) starts; None for a job that is not bulk.

    A count (`--shard-size N`) cuts every shard now; `auto` cuts only a first shard and leaves the rest
    to be sharded by time once that one has measured how fast the model scores. Inputs the resumed job
    already scored are left out of the plan.
    """
    if spec.inputs is not None:
        return None
    from cnnq.jobs.inputs import list_inputs

    inputs = list_inputs(spec.input)
    if spec.resume is not None:
        done = scored_inputs(session, spec.resume, inputs)
        inputs = [path for path in inputs if path not in done]
    if spec.shard_size == "auto":
        first = first_shard_size(len(inputs), spec.batch_size)
        return BulkPlan([inputs[:first]], inputs[first:]) if len(inputs) > first else None
    size = spec.shard_size
    if len(inputs) <= size:
        return None
    return BulkPlan([inputs[start : start + size] for start in range(0, len(inputs), size)], [])


def settle_parent(session: Connection | Session, parent_id: str) -> None:
    """Bring a bulk parent up to date with its shards: progress, RUNNING, and its end once all ended.

    A parent whose first shard has ended but whose other inputs are still unsharded has not ended: if
    that shard SUCCEEDED, they are sharded next (`cnnq.lifecycle.auto_shards`); if it failed or the job
    was cancelled, they never will be and the parent ends.
    """
    parent = get_job(session, parent_id)
    if parent.status.finished or parent.kind == SWEEP_KIND:  # a sweep settles itself: cnnq.sweeps.trials
        return
    children = children_of(session, parent_id)
    if not children:
        return
    unsharded = unsharded_count(session, parent_id)
    counts = Counter(child.status for child in children)
    sizes = [len(shard_inputs(child.spec)) or 1 for child in children]
    progress = sum(child.progress * size for child, size in zip(children, sizes, strict=True)) / (
        sum(sizes) + (unsharded or 0)
    )
    summary = _shard_summary(counts, len(children), unsharded)
    all_ended = all(status.finished for status in counts)
    to_shard = unsharded is not None and counts[JobStatus.SUCCEEDED] == len(children)
    try:
        if parent.status == JobStatus.QUEUED and any(s != JobStatus.QUEUED for s in counts):
            # A parent never beats; a null heartbeat keeps the reaper away from it.
            parent = transition(session, parent_id, JobStatus.RUNNING, heartbeat_at=None)
        if not all_ended or (to_shard and not parent.cancel_requested):
            update_job(session, parent_id, progress=progress, message=summary)
            return
        if counts[JobStatus.SUCCEEDED] == len(children) and unsharded is None:
            _, positive = bulk_decision(session, parent)
            result = {"shards": len(children), **prediction_counts(session, bulk_id_of(parent), positive)}
            output = parent.spec.get("output")
            if output is not None:
                problem = _write_output(session, parent, Path(output))
                if problem is not None:
                    transition(
                        session,
                        parent_id,
                        JobStatus.FAILED,
                        result=result,
                        message=summary,
                        error_type="OutputNotWritten",
                        error_message=problem,
                    )
                    return
                result["output"] = output
            transition(session, parent_id, JobStatus.SUCCEEDED, result=result, message=summary)
        elif counts[JobStatus.FAILED]:
            never = f" ({unsharded} inputs were never sharded)" if unsharded else ""
            transition(
                session,
                parent_id,
                JobStatus.FAILED,
                progress=progress,
                message=summary,
                error_type="ShardsFailed",
                error_message=(
                    f"{counts[JobStatus.FAILED]} of {len(children)} shards failed{never}; `cnnq show` names "
                    f"them, `cnnq submit infer ... --resume {parent_id}` scores what is missing"
                ),
            )
        else:
            transition(session, parent_id, JobStatus.CANCELLED, progress=progress, message=summary)
    except IllegalTransition:
        return  # another shard's worker settled it first
    if unsharded is not None:
        session.execute(delete(unsharded_inputs).where(unsharded_inputs.c.parent_id == parent_id))


def unsharded_count(session: Connection | Session, parent_id: str) -> int | None:
    """How many of an auto-sized bulk job's inputs wait for its first shard's speed; None: none wait."""
    return session.scalar(
        select(func.json_array_length(unsharded_inputs.c.inputs)).where(
            unsharded_inputs.c.parent_id == parent_id
        )
    )


def _write_output(session: Connection | Session, parent: Any, target: Path) -> str | None:
    """Export the bulk job's rows to its `--output` CSV before it ends; None, or why it could not.

    Two shards that end together may both write it: each writes a whole file and renames it into place.
    """
    try:
        with atomic_file(target) as file:
            write_predictions_csv(session, prediction_scope(session, parent), file)
    except OSError as error:
        return (
            f"could not write --output {target}: {error.strerror or error}; every prediction is kept: "
            f"`cnnq results {parent.id} --out FILE` exports them"
        )
    return None


def _shard_summary(counts: Counter[JobStatus], total: int, unsharded: int | None = None) -> str:
    parts = [f"{counts[s]} {s.lower()}" for s in JobStatus if counts[s]]
    summary = f"{total} shards: " + ", ".join(parts)
    if unsharded:
        summary += f"; {unsharded} more inputs are sharded once the first shard has measured the speed"
    return summary
