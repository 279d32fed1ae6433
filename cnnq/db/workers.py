"""Rows of the `workers` table: a worker registers when it is ready, beats while alive, stops on shutdown."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, insert, select, update

from cnnq.db.clock import db_now
from cnnq.db.tables import workers

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session


def register_worker(session: Connection | Session, name: str, **fields: Any) -> None:
    """Insert or replace the row of worker `name` (a restarted worker keeps its node name)."""
    values = {**fields, "started_at": db_now(), "heartbeat_at": db_now(), "stopped_at": None}
    replaced = session.execute(update(workers).where(workers.c.name == name).values(**values))
    if not replaced.rowcount:  # type: ignore[attr-defined]
        session.execute(insert(workers).values(name=name, **values))


def beat_worker(session: Connection | Session, name: str) -> None:
    session.execute(update(workers).where(workers.c.name == name).values(heartbeat_at=db_now()))


def stop_worker(session: Connection | Session, name: str) -> None:
    session.execute(update(workers).where(workers.c.name == name).values(stopped_at=db_now()))


def list_workers(session: Connection | Session, *, include_stopped: bool = False) -> list[Row[Any]]:
    query = select(workers).order_by(workers.c.hostname, workers.c.name)
    if not include_stopped:
        query = query.where(workers.c.stopped_at.is_(None))
    return list(session.execute(query))


def worker_state(worker: Any, lost_after: timedelta, now: datetime) -> str:
    """`up`, `lost` (stopped beating without saying goodbye) or `stopped`; `now` on the database's clock."""
    if worker.stopped_at is not None:
        return "stopped"
    if now - worker.heartbeat_at > lost_after:
        return "lost"
    return "up"
