"""The Reporter a job gets on a worker: everything it reports lands in SQL, fenced by its claim.

Every write first stamps the job's `progress_at` (the database's clock) in an UPDATE that matches only
while the row still holds this run's claim and is RUNNING, in the same transaction as the write itself:
a run that lost its job (re-queued and claimed again elsewhere) raises `JobSuperseded` and writes nothing.
The stamp is also how the worker sees that the job itself is alive: no report for `CNNQ_STALL_SECONDS`
is a stall.

A database outage is waited out: progress is skipped while the database is out, every other write is
retried with backoff, and after `CNNQ_DB_OUTAGE_SECONDS` the job stops with `DatabaseUnavailable`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from threading import Event
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from cnnq.db.clock import db_now
from cnnq.db.orm import Job
from cnnq.db.outage import DatabaseUnavailable, is_outage, retrying
from cnnq.db.records import (
    CURVE_PREFIX,
    append_log,
    inputs_written_by,
    insert_predictions,
    record_artifact,
    record_metrics,
    scored_inputs,
)
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.file_digest import file_sha256
from cnnq.jobs.reporter import JobCancelled, JobInterrupted, JobSuperseded, PredictionRow
from cnnq.settings import get_settings

T = TypeVar("T")

_PROGRESS_EVERY_SECONDS = 0.5


class SqlReporter:
    """Writes progress, metrics, artifacts, log lines and predictions of the run holding claim `token` of
    job `job_id`. `bulk_id` is the bulk job whose predictions these are (the job itself when alone).
    `resumed`: the job resumes another (`--resume`, a retried shard), whose rows it skips too.
    Setting `stop` (its worker is stopping) makes the next `check_stop` raise `JobInterrupted`.
    `on_metrics` hears each step's metrics once they are recorded (a sweep's trial reports them to its
    study there, and may raise `JobPruned`: `cnnq.sweeps.pruning`)."""

    def __init__(
        self,
        job_id: str,
        token: int,
        bulk_id: str | None = None,
        stop: Event | None = None,
        *,
        resumed: bool = False,
        on_metrics: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> None:
        settings = get_settings()
        self.job_id = job_id
        self.token = token
        self.bulk_id = bulk_id or job_id
        self.resumed = resumed
        self._stop = stop or Event()
        self._on_metrics = on_metrics
        self._poll_every = settings.cancel_poll_seconds
        self._patience = settings.db_outage_seconds
        self._outage_since: float | None = None
        self._last_progress_write = 0.0
        self._last_message: str | None = None
        self._last_poll = 0.0
        self._cancelled = False

    # --- the Reporter protocol ---------------------------------------------------------------------

    def progress(self, fraction: float, message: str | None = None) -> None:
        now = time.monotonic()
        fraction = max(0.0, min(1.0, float(fraction)))
        changed_message = message is not None and message != self._last_message
        if (
            not changed_message
            and fraction < 1.0
            and now - self._last_progress_write < _PROGRESS_EVERY_SECONDS
        ):
            return
        fields: dict[str, Any] = {"progress": fraction}
        if message is not None:
            fields["message"] = message
        if self._try_once(lambda session: None, **fields):
            self._last_message = message if message is not None else self._last_message
        self._last_progress_write = now

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self._write(lambda session: record_metrics(session, self.job_id, step, values), "recording metrics")
        if self._on_metrics is not None:
            self._on_metrics(step, values)

    def curve(self, step: int, values: Mapping[str, float]) -> None:
        named = {CURVE_PREFIX + name: value for name, value in values.items()}
        self._write(lambda session: record_metrics(session, self.job_id, step, named), "recording the curve")

    def artifact(self, kind: str, path: Path) -> None:
        path = Path(path).absolute()
        size, digest = path.stat().st_size, file_sha256(path)
        self._write(
            lambda session: record_artifact(session, self.job_id, kind, str(path), size, digest),
            f"recording the {kind} artifact",
        )

    def log(self, line: str) -> None:
        self._write(lambda session: append_log(session, self.job_id, [line]), "writing the log")

    def result(self, summary: Mapping[str, Any]) -> None:
        stored = json.loads(json.dumps(dict(summary), default=str))  # paths and numpy numbers as JSON
        self._write(lambda session: None, "recording the result", result=stored)

    def predictions(self, rows: Sequence[PredictionRow]) -> None:
        dicts = [row.as_dict() for row in rows]
        self._write(
            lambda session: insert_predictions(session, self.job_id, self.bulk_id, dicts),
            "recording predictions",
        )

    def done_inputs(self, inputs: Sequence[str]) -> set[str]:
        """Rows this job's earlier attempts wrote; a resumed job (`resumed`) also skips the rows of the
        job it resumes. A shard's inputs are its own: no sibling writes them."""

        def done(session: Session) -> set[str]:
            found = inputs_written_by(session, self.job_id)
            if self.resumed:
                found |= scored_inputs(session, self.bulk_id, list(inputs))
            return found & set(inputs)

        return self._write(done, "reading scored inputs")

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise JobInterrupted("its worker is stopping")
        now = time.monotonic()
        if not self._cancelled and now - self._last_poll >= self._poll_every:
            self._last_poll = now
            self._try_once(lambda session: None)
        if self._cancelled:
            raise JobCancelled("cancelled on request")

    def check_owner(self) -> None:
        self._write(lambda session: None, "checking that this run still owns its job")

    # --- fenced writes -----------------------------------------------------------------------------

    def _fenced(self, session: Session, fields: dict[str, Any]) -> None:
        """Stamp the job as alive (and set `fields`) if this run still holds it; else `JobSuperseded`."""
        cancelled = session.execute(
            update(Job)
            .where(Job.id == self.job_id, Job.claims == self.token, Job.status == JobStatus.RUNNING)
            .values(progress_at=db_now(), **fields)
            .returning(Job.cancel_requested)
            .execution_options(synchronize_session=False)
        ).scalar()
        if cancelled is None:
            raise JobSuperseded(f"job {self.job_id}: claim {self.token} is no longer the job's")
        self._cancelled = self._cancelled or bool(cancelled)

    def _unit(self, action: Callable[[Session], T], fields: dict[str, Any]) -> T:
        with session_scope() as session:
            self._fenced(session, fields)
            return action(session)

    def _write(self, action: Callable[[Session], T], what: str, **fields: Any) -> T:
        """One fenced unit of work, retried while the database is out (within the job's patience)."""
        result = retrying(
            lambda: self._unit(action, fields), patience=self._patience, what=what, since=self._outage_since
        )
        self._outage_since = None
        return result

    def _try_once(self, action: Callable[[Session], None], **fields: Any) -> bool:
        """A write that may be skipped while the database is out (progress, polls); True if it landed."""
        try:
            self._unit(action, fields)
        except Exception as error:
            if not is_outage(error):
                raise
            now = time.monotonic()
            self._outage_since = self._outage_since or now
            if now - self._outage_since > self._patience:
                raise DatabaseUnavailable(
                    f"the database did not answer for {now - self._outage_since:.0f}s "
                    f"(CNNQ_DB_OUTAGE_SECONDS={self._patience:.0f})"
                ) from error
            return False
        self._outage_since = None
        return True
