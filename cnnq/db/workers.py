"""Rows of the `workers` table: a worker registers when it is ready, beats while alive, stops on shutdown."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cnnq.db.clock import db_now
from cnnq.db.tables import Worker


def register_worker(session: Session, name: str, **fields: Any) -> None:
    """Insert or replace the row of worker `name` (a restarted worker keeps its node name)."""
    worker = session.get(Worker, name)
    if worker is None:
        worker = Worker(name=name, **fields)
        session.add(worker)
    else:
        for key, value in fields.items():
            setattr(worker, key, value)
    worker.started_at = db_now()  # type: ignore[assignment]
    worker.heartbeat_at = db_now()  # type: ignore[assignment]
    worker.stopped_at = None
    session.flush()


def beat_worker(session: Session, name: str) -> None:
    session.execute(
        update(Worker)
        .where(Worker.name == name)
        .values(heartbeat_at=db_now())
        .execution_options(synchronize_session=False)
    )


def stop_worker(session: Session, name: str) -> None:
    session.execute(
        update(Worker)
        .where(Worker.name == name)
        .values(stopped_at=db_now())
        .execution_options(synchronize_session=False)
    )


def list_workers(session: Session, *, include_stopped: bool = False) -> list[Worker]:
    query = select(Worker).order_by(Worker.hostname, Worker.name)
    if not include_stopped:
        query = query.where(Worker.stopped_at.is_(None))
    return list(session.scalars(query))


def worker_state(worker: Worker, lost_after: timedelta, now: datetime) -> str:
    """`up`, `lost` (stopped beating without saying goodbye) or `stopped`; `now` on the database's clock."""
    if worker.stopped_at is not None:
        return "stopped"
    if now - worker.heartbeat_at > lost_after:
        return "lost"
    return "up"
