"""The one small interface through which a running job talks to the world.

A job never imports Celery or SQLAlchemy: progress, metrics, artifacts, predictions, log lines and
the cancel check all go through a `Reporter`. Workers pass one that writes to SQL
(`cnnq.lifecycle.sql_reporter`); tests pass a `RecordingReporter`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class JobStopped(Exception):
    """Raised inside a job by `Reporter.check_stop`: the job must stop now. Why decides how it ends."""


class JobCancelled(JobStopped):
    """Someone asked the job to stop: it ends CANCELLED."""


class JobInterrupted(JobStopped):
    """Its worker is stopping (SIGTERM, Ctrl-C): the job goes back to the queue, its attempt not spent,
    and resumes from its checkpoint on the next worker."""


class JobPruned(JobStopped):
    """A trial of a hyperparameter sweep whose pruner judged its last epoch's metric not worth more
    epochs: it ends PRUNED (raised by the reporter that took the epoch's metrics)."""


class JobSuperseded(JobStopped):
    """This run no longer owns its job (it was re-queued and claimed again elsewhere): it writes nothing
    more, no row and no file."""


@dataclass(frozen=True)
class PredictionRow:
    input: str
    label: str | None = None
    score: float | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "label": self.label,
            "score": self.score,
            "probabilities": self.probabilities,
            "error": self.error,
        }


class Reporter(Protocol):
    def progress(self, fraction: float, message: str | None = None) -> None:
        """How far the job is, from 0 to 1, with an optional status line."""

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Metric values at a step (an epoch for training; 0 for one-off reports). May raise `JobPruned`
        (a sweep's trial whose pruner stops it here): the job ends at once, nothing more to save."""

    def curve(self, step: int, values: Mapping[str, float]) -> None:
        """Points of a training curve within an epoch (step: batches trained so far), kept apart from the
        per-epoch metrics: no pruner hears them and a job's `history` leaves them out."""

    def artifact(self, kind: str, path: Path) -> None:
        """A file the job wrote (checkpoint, best model, report...); the same kind replaces the last."""

    def log(self, line: str) -> None: ...

    def result(self, summary: Mapping[str, Any]) -> None:
        """The job's result (evaluation details, counts), stored with the job: the only way it is stored
        (the job function also returns it, for callers in this process). A later call replaces it."""

    def predictions(self, rows: Sequence[PredictionRow]) -> None:
        """Scored or flagged inputs, in batches."""

    def done_inputs(self, inputs: Sequence[str]) -> set[str]:
        """Which of these inputs already have a prediction row (a re-delivered shard skips them)."""

    def check_stop(self) -> None:
        """Raise a `JobStopped` once the job must stop. Jobs call it every batch: the reporter throttles
        what it costs (a look at the database at most every `CNNQ_CANCEL_POLL_SECONDS`)."""

    def check_owner(self) -> None:
        """Raise `JobSuperseded` unless this run still owns its job; not throttled. Called right before a
        file replaces another (a checkpoint, the model), so a superseded run never replaces the current
        run's files."""


@dataclass
class RecordingReporter:
    """Keeps everything in lists: for tests, and for jobs run without a database."""

    cancel_after: float | None = None
    """Report a cancel request once this many seconds have passed (tests)."""

    progress_updates: list[tuple[float, str | None]] = field(default_factory=list)
    metric_rows: dict[tuple[int, str], float] = field(default_factory=dict)
    curve_points: dict[tuple[int, str], float] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, PredictionRow] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    def progress(self, fraction: float, message: str | None = None) -> None:
        self.progress_updates.append((fraction, message))

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.metric_rows[(step, name)] = float(value)

    def curve(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.curve_points[(step, name)] = float(value)

    def artifact(self, kind: str, path: Path) -> None:
        self.artifacts[kind] = path

    def log(self, line: str) -> None:
        self.lines.append(line)

    def result(self, summary: Mapping[str, Any]) -> None:
        self.summary = dict(summary)

    def predictions(self, rows: Sequence[PredictionRow]) -> None:
        for row in rows:
            self.rows.setdefault(row.input, row)

    def done_inputs(self, inputs: Sequence[str]) -> set[str]:
        return {i for i in inputs if i in self.rows}

    def check_stop(self) -> None:
        if self.cancel_after is not None and time.monotonic() - self._started >= self.cancel_after:
            raise JobCancelled("cancelled on request")

    def check_owner(self) -> None:
        """A job run without a queue always owns itself."""

    def history(self) -> list[dict[str, float]]:
        """One object per step, as the job object's `history`."""
        steps: dict[int, dict[str, float]] = {}
        for (step, name), value in sorted(self.metric_rows.items()):
            steps.setdefault(step, {"epoch": step})[name] = value
        return [steps[s] for s in sorted(steps)]
