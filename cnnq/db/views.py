"""The job object of the scripting contract: what `--json` prints for a job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnq.db.records import artifacts_of, last_metrics, metric_history

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_object(session: Connection | Session, job: Any) -> dict[str, Any]:
    """`id`, `kind`, `status`, `spec`, `metrics` (each name's last value), `history` (one object per
    epoch), `artifacts`, `error`, and the bookkeeping around them."""
    error = None
    if job.error_type or job.error_message:
        error = {"type": job.error_type, "message": job.error_message, "traceback": job.error_traceback}
    return {
        "id": job.id,
        "kind": job.kind,
        "status": str(job.status),
        "spec": job.spec,
        "metrics": last_metrics(session, job.id),
        "history": metric_history(session, job.id),
        "artifacts": [
            {"kind": a.kind, "uri": a.uri, "bytes": a.bytes, "sha256": a.sha256}
            for a in artifacts_of(session, job.id)
        ],
        "error": error,
        "result": job.result,
        "progress": job.progress,
        "message": job.message,
        "queue": job.queue,
        "priority": job.priority,
        "parent_id": job.parent_id,
        "attempts": job.attempts,
        "worker": job.worker,
        "device": job.device,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "heartbeat_at": _iso(job.heartbeat_at),
    }
