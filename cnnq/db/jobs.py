"""Job rows: create them, move their status, find them. Every status change goes through `transition`.

Core statements on `cnnq.db.tables.jobs`, run through a `Session` or a `Connection` alike; a job comes
back as a `Row`, whose attributes are the job's columns, as an `orm.Job`'s are.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Row, func, insert, select, update

from cnnq.db.clock import db_ago, db_now
from cnnq.db.status import FINISHED, IllegalTransition, JobStatus, check_transition, sources_of
from cnnq.db.tables import jobs

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

_ID_ALPHABET = string.ascii_lowercase + string.digits


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}; `cnnq jobs` lists the jobs")
        self.job_id = job_id


def new_job_id(kind: str) -> str:
    """Short, readable and unique enough: `train-k3x9qa` (36^6, about 2 billion per kind)."""
    return f"{kind}-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


def create_job(
    session: Connection | Session,
    *,
    kind: str,
    spec: dict[str, Any],
    queue: str,
    priority: int = 0,
    parent_id: str | None = None,
    job_id: str | None = None,
    **fields: Any,
) -> Row[Any]:
    """Insert a QUEUED job; `fields` set other columns (`message`, `sent_at`)."""
    stmt = insert(jobs).values(
        id=job_id or new_job_id(kind),
        kind=kind,
        spec=spec,
        status=JobStatus.QUEUED,
        priority=priority,
        queue=queue,
        parent_id=parent_id,
        **fields,
    )
    return session.execute(stmt.returning(*jobs.c)).one()


def _row(session: Connection | Session, job_id: str) -> Row[Any] | None:
    return session.execute(select(jobs).where(jobs.c.id == job_id)).first()


def get_job(session: Connection | Session, job_id: str) -> Row[Any]:
    job = _row(session, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def find_job(session: Connection | Session, prefix: str) -> Row[Any]:
    """A job by its id, or by a prefix that names exactly one job."""
    job = _row(session, prefix)
    if job is not None:
        return job
    matches = session.execute(
        select(jobs).where(jobs.c.id.startswith(prefix, autoescape=True)).limit(2)
    ).all()
    if len(matches) == 1:
        return matches[0]
    raise JobNotFound(prefix)


def transition(
    session: Connection | Session,
    job_id: str,
    target: JobStatus,
    *,
    only_if: ColumnElement[bool] | None = None,
    **fields: Any,
) -> Row[Any]:
    """Move a job to `target`, refusing illegal moves; race-free across processes. Returns the job's row
    as it is now.

    The UPDATE only matches rows still in a status from which `target` is legal (and, with `only_if`,
    that still meet that condition), so two workers (or a worker and a reaper) cannot both win.
    """
    job = get_job(session, job_id)
    check_transition(job_id, job.status, target)
    values: dict[str, Any] = {"status": target, **fields}
    if target == JobStatus.RUNNING:
        values.setdefault("started_at", db_now())
        values.setdefault("heartbeat_at", db_now())
    if target in FINISHED:
        values.setdefault("finished_at", db_now())
        if target == JobStatus.SUCCEEDED:
            values.setdefault("progress", 1.0)
    conditions = [jobs.c.id == job_id, jobs.c.status.in_(sources_of(target))]
    if only_if is not None:
        conditions.append(only_if)
    result = session.execute(update(jobs).where(*conditions).values(**values))
    job = get_job(session, job_id)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise IllegalTransition(job_id, job.status, target)
    return job


def update_job(session: Connection | Session, job_id: str, **fields: Any) -> None:
    """Change fields other than the status (progress, message, heartbeat...)."""
    if "status" in fields:
        raise ValueError("use transition() to change a job's status")
    session.execute(update(jobs).where(jobs.c.id == job_id).values(**fields))


def request_cancel(session: Connection | Session, job_id: str) -> Row[Any]:
    """Cancel cooperatively: a queued job is cancelled now, a running one is asked to stop.

    A bulk parent passes the request to its shards. Its row is marked (and so locked) before its shards
    are listed: a shard planned at the same moment (`cnnq.lifecycle.auto_shards`) is either listed here
    or never planned.
    """
    job = get_job(session, job_id)
    if job.status.finished:
        return job
    update_job(session, job_id, cancel_requested=True)
    children = session.scalars(select(jobs.c.id).where(jobs.c.parent_id == job_id)).all()
    for child_id in children:
        request_cancel(session, child_id)
    job = get_job(session, job_id)
    if job.status == JobStatus.QUEUED and not children:
        try:
            return transition(session, job_id, JobStatus.CANCELLED, message="cancelled before it started")
        except IllegalTransition:
            return get_job(session, job_id)
    return job


def list_jobs(
    session: Connection | Session,
    *,
    statuses: Sequence[JobStatus] = (),
    kinds: Sequence[str] = (),
    since: datetime | None = None,
    parent_id: str | None = None,
    top_level: bool = False,
    limit: int = 100,
) -> list[Row[Any]]:
    query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id)
    if statuses:
        query = query.where(jobs.c.status.in_(statuses))
    if kinds:
        query = query.where(jobs.c.kind.in_(kinds))
    if since is not None:
        query = query.where(jobs.c.created_at >= since)
    if parent_id is not None:
        query = query.where(jobs.c.parent_id == parent_id)
    elif top_level:  # leaves out bulk shards; a sweep's trials are train jobs of their own
        query = query.where(jobs.c.parent_id.is_(None) | (jobs.c.kind == "train"))
    return list(session.execute(query.limit(limit)))


def children_of(session: Connection | Session, job_id: str) -> list[Row[Any]]:
    return list(session.execute(select(jobs).where(jobs.c.parent_id == job_id).order_by(jobs.c.id)))


def count_by_status(session: Connection | Session, parent_id: str) -> dict[JobStatus, int]:
    rows = session.execute(
        select(jobs.c.status, func.count()).where(jobs.c.parent_id == parent_id).group_by(jobs.c.status)
    ).all()
    return {JobStatus(status): count for status, count in rows}


def lost_jobs(session: Connection | Session, lost_after: timedelta) -> list[Row[Any]]:
    """Running jobs whose heartbeat stopped, by the database's clock: their worker died.
    (A bulk parent never beats itself: its heartbeat is null.)"""
    return list(session.execute(select(jobs).where(jobs.c.status == JobStatus.RUNNING, stale(lost_after))))


def stale(lost_after: timedelta) -> ColumnElement[bool]:
    """The condition `this running job's worker stopped beating`, on the database's clock."""
    return jobs.c.heartbeat_at.is_not(None) & (jobs.c.heartbeat_at < db_ago(lost_after.total_seconds()))


def is_lost(job: Any, lost_after: timedelta, now: datetime) -> bool:
    """For reports: `now` is the database's time (`read_db_now`), never this host's. `job`: a row of
    `jobs` or an `orm.Job`, as for the functions below."""
    if job.status != JobStatus.RUNNING or job.heartbeat_at is None:
        return False
    return now - job.heartbeat_at > lost_after


def bulk_id_of(job: Any) -> str:
    """The job whose predictions this one writes: the resumed job, the bulk parent, or itself."""
    return job.spec.get("resume") or job.parent_id or job.id


def bulk_decision(session: Connection | Session, job: Any) -> tuple[float | None, str | None]:
    """The threshold and positive class a bulk job scored with, from its shards' (or its own) result;
    (None, None) until one has finished or for more than two classes."""
    for source in [job, *children_of(session, job.id)]:
        result = source.result or {}
        if "positive_class" in result:
            threshold = result.get("threshold")
            return (float(threshold) if threshold is not None else None), result.get("positive_class")
    threshold = job.spec.get("threshold")
    return (float(threshold) if threshold is not None else None), None
