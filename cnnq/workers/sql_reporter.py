"""The Reporter a job gets on a worker: everything it reports lands in SQL."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnq.db.jobs import is_cancel_requested, update_job
from cnnq.db.records import append_log, insert_predictions, record_artifact, record_metrics, scored_inputs
from cnnq.db.session import session_scope
from cnnq.file_digest import file_sha256
from cnnq.jobs.reporter import PredictionRow
from cnnq.settings import get_settings

_PROGRESS_EVERY_SECONDS = 0.5


class SqlReporter:
    """Writes progress, metrics, artifacts, log lines and predictions of job `job_id`.

    `bulk_id` is the bulk job whose predictions these are (the job itself when it stands alone).
    Progress writes and cancel reads are throttled, so a job may call them every batch.
    """

    def __init__(self, job_id: str, bulk_id: str | None = None) -> None:
        self.job_id = job_id
        self.bulk_id = bulk_id or job_id
        self._cancel_poll = get_settings().cancel_poll_seconds
        self._last_progress_write = 0.0
        self._last_message: str | None = None
        self._last_cancel_check = 0.0
        self._cancelled = False

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
            self._last_message = message
        with session_scope() as session:
            update_job(session, self.job_id, **fields)
        self._last_progress_write = now

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        with session_scope() as session:
            record_metrics(session, self.job_id, step, values)

    def artifact(self, kind: str, path: Path) -> None:
        path = Path(path).absolute()
        with session_scope() as session:
            record_artifact(session, self.job_id, kind, str(path), path.stat().st_size, file_sha256(path))

    def log(self, line: str) -> None:
        with session_scope() as session:
            append_log(session, self.job_id, [line])

    def result(self, summary: Mapping[str, Any]) -> None:
        with session_scope() as session:
            update_job(session, self.job_id, result=dict(summary))

    def predictions(self, rows: Sequence[PredictionRow]) -> None:
        with session_scope() as session:
            insert_predictions(session, self.job_id, self.bulk_id, [row.as_dict() for row in rows])

    def done_inputs(self, inputs: Sequence[str]) -> set[str]:
        with session_scope() as session:
            return scored_inputs(session, self.bulk_id, list(inputs))

    def cancel_requested(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= self._cancel_poll:
            self._last_cancel_check = now
            with session_scope() as session:
                self._cancelled = is_cancel_requested(session, self.job_id)
        return self._cancelled
