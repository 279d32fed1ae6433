"""Bulk inference: one parent job, one child job per shard of inputs, predictions kept per parent.

A parent never runs itself: it is RUNNING once any shard runs and ends when all shards have ended.
Its `--output` CSV, if asked for, is written from the prediction rows by the worker that ends it, so
the path must be one that workers can write (a shared volume when they run on several hosts).
`--resume JOB` scores into JOB's predictions (its bulk id), so only the inputs JOB lacks are scored.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy.orm import Session

from cnnq.db.jobs import JobNotFound, children_of, find_job, get_job, transition, update_job
from cnnq.db.records import prediction_counts, scored_inputs
from cnnq.db.status import IllegalTransition, JobStatus
from cnnq.db.tables import Job
from cnnq.errors import UserError
from cnnq.jobs.spec import InferSpec


def bulk_id_of(job: Job) -> str:
    """The job whose predictions this one writes: the resumed job, the bulk parent, or itself."""
    return job.spec.get("resume") or job.parent_id or job.id


def resolve_resume(session: Session, spec: InferSpec) -> InferSpec:
    """`--resume` names an inference job (by id or prefix); store its full id."""
    if spec.resume is None:
        return spec
    try:
        resumed = find_job(session, spec.resume)
    except JobNotFound as error:
        raise UserError(f"--resume: {error}") from None
    if resumed.kind != "infer":
        raise UserError(f"--resume: job {resumed.id} is a {resumed.kind} job; name an inference job")
    return spec.model_copy(update={"resume": resumed.spec.get("resume") or resumed.id})


def plan_shards(session: Session, spec: InferSpec) -> list[list[str]] | None:
    """The inputs of each shard when the job is bulk (more inputs than `shard_size`), else None.

    Inputs the resumed job already scored are left out of the plan.
    """
    if spec.paths is not None:
        return None
    from cnnq.jobs.inputs import list_inputs

    inputs = list_inputs(spec.input)
    if spec.resume is not None:
        done = scored_inputs(session, spec.resume, inputs)
        inputs = [path for path in inputs if path not in done]
    if len(inputs) <= spec.shard_size:
        return None
    return [inputs[start : start + spec.shard_size] for start in range(0, len(inputs), spec.shard_size)]


def settle_parent(session: Session, parent_id: str) -> None:
    """Bring a bulk parent up to date with its shards: progress, RUNNING, and its end once all ended."""
    parent = get_job(session, parent_id)
    if parent.status.finished:
        return
    children = children_of(session, parent_id)
    if not children:
        return
    counts = Counter(child.status for child in children)
    progress = sum(child.progress for child in children) / len(children)
    try:
        if parent.status == JobStatus.QUEUED and any(s != JobStatus.QUEUED for s in counts):
            # A parent never beats; a null heartbeat keeps the reaper away from it.
            parent = transition(session, parent_id, JobStatus.RUNNING, heartbeat_at=None)
        if not all(status.finished for status in counts):
            update_job(session, parent_id, progress=progress, message=_shard_summary(counts, len(children)))
            return
        summary = _shard_summary(counts, len(children))
        if counts[JobStatus.SUCCEEDED] == len(children):
            positive = next((c.result.get("positive_class") for c in children if c.result), None)
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
            transition(
                session,
                parent_id,
                JobStatus.FAILED,
                progress=progress,
                message=summary,
                error_type="ShardsFailed",
                error_message=(
                    f"{counts[JobStatus.FAILED]} of {len(children)} shards failed; `cnnq show` names them, "
                    f"`cnnq submit infer ... --resume {parent_id}` scores what is missing"
                ),
            )
        else:
            transition(session, parent_id, JobStatus.CANCELLED, progress=progress, message=summary)
    except IllegalTransition:
        pass  # another shard's worker settled it first


def _write_output(session: Session, parent: Job, target: Path) -> str | None:
    """Export the bulk job's rows to its `--output` CSV before it ends; None, or why it could not.

    Two shards that end together may both write it: each writes a whole file and renames it into place.
    """
    from cnnq.db.results import write_predictions_csv

    try:
        write_predictions_csv(session, parent, target)
    except OSError as error:
        return (
            f"could not write --output {target}: {error.strerror or error}; every prediction is kept: "
            f"`cnnq results {parent.id} --out FILE` exports them"
        )
    return None


def _shard_summary(counts: Counter[JobStatus], total: int) -> str:
    parts = [f"{counts[s]} {s.lower()}" for s in JobStatus if counts[s]]
    return f"{total} shards: " + ", ".join(parts)
